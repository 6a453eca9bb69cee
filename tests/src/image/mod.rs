//! Offline OCI test images built from host files.
//!
//! Nothing here touches the network except [`push`]: images are assembled from
//! files already on the host (busybox-static, host binaries and their shared
//! libraries) or generated from a seeded PRNG, and serialized deterministically
//! so that the same inputs always give the same digests. Every image is written
//! as an OCI image layout directory, a `docker save` archive and an OCI layout
//! tar; [`catalog::build_all`] builds the project's whole set with caching.
//!
//! One concern per file:
//! - [`layer`] (with [`source`]): layer model and deterministic tar+gzip serialization,
//! - [`hostfs`]: copying host paths with every symlink on the way,
//! - [`elf`]: the shared-library closure of host binaries,
//! - [`manifest`]: the OCI JSON documents and reading them from a layout,
//! - [`oci`]: OCI layout, config, manifest and index writing,
//! - [`archive`]: `docker save` and OCI layout tarballs,
//! - [`push`]: pushing a layout to a Distribution registry,
//! - [`flatten`]: the reference flattener that says what an unpacker must produce,
//! - [`catalog`] (with [`busybox`], [`layered`], [`large`], [`mpi`], [`cache`]): the test images.

pub mod archive;
pub mod busybox;
pub mod cache;
pub mod catalog;
pub mod digest;
pub mod elf;
pub mod flatten;
pub mod hostfs;
pub mod large;
pub mod layer;
pub mod layered;
pub mod manifest;
pub mod mpi;
pub mod oci;
pub mod push;
pub mod source;
mod tarball;

#[cfg(test)]
mod push_tests;
#[cfg(test)]
mod test_support;

pub use catalog::{build_all, hostbins, Catalog, DEFAULT_CACHE_DIR};
pub use layer::{Entry, EntryKind, FileSource, Layer, LayerBlob};
pub use oci::{build_image, BuiltImage, ImageSpec, PlatformManifest};
pub use push::{push, PushTarget};

use std::path::PathBuf;

/// Modification time of every tar entry and the `created` time of every
/// config (2023-11-14T22:13:20Z): a fixed value keeps digests reproducible.
pub const FIXED_MTIME: u64 = 1_700_000_000;

/// RFC 3339 form of [`FIXED_MTIME`], used for `created` fields.
pub const FIXED_CREATED: &str = "2023-11-14T22:13:20Z";

/// Bumped whenever the builder's output format changes, so cached images built
/// by an older builder are rebuilt instead of silently reused.
pub const BUILDER_VERSION: u32 = 1;

/// Everything that can go wrong while building, writing or pushing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A filesystem operation on a known path failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A layer definition is inconsistent (duplicate path, bad hardlink, ...).
    #[error("invalid layer entry {path}: {reason}")]
    InvalidEntry {
        /// Image path of the entry.
        path: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A host binary or library could not be parsed or resolved.
    #[error("elf closure of {path}: {reason}")]
    Elf {
        /// Host path of the object.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An OCI layout on disk is missing something or is malformed.
    #[error("oci layout {path}: {reason}")]
    Layout {
        /// Layout directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document could not be (de)serialized.
    #[error("json for {what}: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A registry refused a request or was unreachable.
    #[error("{0}")]
    Registry(String),
    /// A layer tar stream could not be flattened.
    #[error("flattening layer {layer}: {reason}")]
    Flatten {
        /// Index of the layer (0 = bottom).
        layer: usize,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    /// Wraps an I/O error with the action and path it concerns.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }

    /// Wraps a serde_json error with the document it concerns.
    pub fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Self {
        let what = what.into();
        move |source| ImageError::Json { what, source }
    }
}

/// Moves a finished temp file to `dest`, readable by everyone: test users
/// other than root read these images, and temp files start out 0600.
pub(crate) fn persist(
    tmp: tempfile::NamedTempFile,
    dest: &std::path::Path,
) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(tmp.path(), perms)
        .map_err(ImageError::io("cannot chmod", tmp.path()))?;
    tmp.persist(dest)
        .map_err(|e| ImageError::io("cannot rename temp file to", dest)(e.error))?;
    Ok(())
}

/// The host's architecture in Go/OCI naming (`amd64`, `arm64`, ...).
pub fn host_arch() -> &'static str {
    go_arch(std::env::consts::ARCH)
}

/// Maps a Rust architecture name to its Go/OCI name.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    }
}
