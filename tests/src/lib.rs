//! berth's test kit: a real single-node Slurm cluster, a real Distribution
//! registry, and offline OCI test images built from host files.
//!
//! The end-to-end tests under `tests/` and the `berth-dev` command (which the
//! README's two commands call) are both built on this crate.

pub mod cluster;
pub mod daemon;
pub mod demo;
pub mod fsutil;
pub mod image;
pub mod lock;
pub mod paths;
pub mod proc;
pub mod registry;
pub mod site;
pub mod stack;
pub mod user;
