//! Offline OCI test images built from host files (owned by the image builder work).
