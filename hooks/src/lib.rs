//! Shared pieces of berth's OCI hook binaries (MPI, NVIDIA, SSH, launch barrier).
//!
//! Every OCI hook receives the container's state as JSON on stdin (runtime spec,
//! "Lifecycle"). [`Container::from_stdin`] turns it into typed data: the state,
//! the bundle's `config.json` and the absolute rootfs path. A hook that changes
//! the container's filesystem first calls [`Container::enter_mount_ns`], then
//! uses [`inject::Rootfs`] so every path is resolved inside the rootfs and
//! nothing is mounted on the host. [`run_main`] is the common `main`.

pub mod barrier;
pub mod container;
pub mod elf;
pub mod inject;
pub mod ldconfig;
pub mod libpath;
pub mod mpi;
pub mod nvidia;
pub mod ssh;

use std::io::Read;

pub use container::Container;
use oci_spec::runtime::State;

/// Errors common to all hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// stdin could not be read.
    #[error("cannot read the container state from stdin: {0}")]
    Stdin(#[from] std::io::Error),
    /// stdin did not hold an OCI state document.
    #[error("the container state on stdin is not OCI state JSON: {0}")]
    State(#[from] serde_json::Error),
    /// The state has no pid (the container is not created).
    #[error("the container state has no pid: hooks must run at createRuntime or later")]
    NoPid,
    /// The bundle's config.json cannot be read.
    #[error("cannot read {path}: {reason}")]
    Config { path: String, reason: String },
    /// Joining the container's mount namespace failed.
    #[error("cannot enter the mount namespace of pid {pid}: {source}")]
    Setns { pid: i32, source: std::io::Error },
    /// A hook-specific failure, already worded for the user.
    #[error("{0}")]
    Other(String),
}

/// Parses the OCI state document a runtime writes to a hook's stdin.
pub fn read_state(mut input: impl Read) -> Result<State, HookError> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text)?)
}

/// The common `main` of a hook binary: runs `f`, and on error prints one line
/// `NAME: error: CAUSE` on stderr and exits 1. The runtime puts a failing
/// hook's output in its own error, so that line is what the user sees.
pub fn run_main<E: std::fmt::Display>(name: &str, f: impl FnOnce() -> Result<(), E>) -> ! {
    match f() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{name}: error: {e}");
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runtime_state() {
        let json = r#"{"ociVersion":"1.2.0","id":"c1","status":"created","pid":42,"bundle":"/b"}"#;
        let state = read_state(json.as_bytes()).unwrap();
        assert_eq!(state.id(), "c1");
        assert_eq!(state.pid(), &Some(42));
    }

    #[test]
    fn rejects_garbage() {
        let err = read_state("not json".as_bytes()).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("the container state on stdin is not OCI state JSON"));
    }
}
