//! berth's test kit: a real single-node Slurm cluster, a real Distribution
//! registry, and offline OCI test images built from host files.
//!
//! The end-to-end tests under `tests/` and the `berth-dev` command (which the
//! README's two commands call) are both built on this crate.

pub mod cc;
pub mod cluster;
pub mod daemon;
pub mod demo;
pub mod e2e;
pub mod fake_gpu;
pub mod fsutil;
pub mod hooks_d;
pub mod image;
pub mod leaks;
pub mod lock;
pub mod paths;
pub mod proc;
pub mod registry;
pub mod site;
pub mod stack;
pub mod user;
