//! Processes: forking the container init ([`fork`]), setting the container
//! up from inside ([`init`]) and the final identity/exec step shared with
//! `berth exec` ([`exec`]).

pub mod exec;
pub mod fork;
pub mod init;

/// Errors of process setup; messages from inside the container arrive as
/// `Child` with the text the init sent over the sync socket.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Child(String),
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("executable {0:?} not found in the container")]
    NotFound(String),
    #[error("refusing to execute {0}: it resolves to the berth binary (CVE-2019-5736 class)")]
    SelfExec(String),
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand for a failed syscall.
pub fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Sys { what, source }
}

/// Shorthand for a failed I/O call.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Io { what, source }
}
