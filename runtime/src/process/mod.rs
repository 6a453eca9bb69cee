//! Processes: forking the container init ([`fork`]), setting the container
//! up from inside ([`init`]) and the final identity/exec step shared with
//! `berth exec` ([`exec`]).

pub mod exec;
pub mod fork;
pub mod init;
pub mod interp;

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
    #[error("{program} is a script for {interp}, which is not in the container or not executable: fix its #! line or add {interp} to the image")]
    NoInterpreter { program: String, interp: String },
    #[error("{program} needs the program loader {interp}, which is not in the container or not executable: the image lacks the C library the program was built for, or the program is for another architecture")]
    NoLoader { program: String, interp: String },
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

/// Waits for `pid` (a child of ours) and returns its exit code the way shells
/// report it: the exit status, or 128 + the signal that killed it (255 when the
/// wait itself fails).
pub fn wait_exit_code(pid: nix::unistd::Pid) -> i32 {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(_, c)) => return c,
            Ok(WaitStatus::Signaled(_, s, _)) => return 128 + s as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}
