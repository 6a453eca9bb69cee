//! Lifecycle operations, one per module: [`create`], [`start`], [`kill`],
//! [`delete`], plus [`exec`] into a running container.

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod start;

use crate::state::Status;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of lifecycle operations that are not another module's.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {id} is {status}, not created")]
    NotCreated { id: String, status: Status },
    #[error("container {id} is {status}; stop it first or use --force")]
    NotStopped { id: String, status: Status },
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("invalid signal {0:?}")]
    BadSignal(String),
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("start: {0}")]
    Start(String),
    #[error("container init exited before start")]
    InitGone,
    #[error("{0}")]
    Other(String),
}

/// The most fds a caller may pass on (`--preserve-fds` plus `LISTEN_FDS`).
pub const MAX_PRESERVED_FDS: u32 = 4096;

/// Checks the fds the caller passes on (3 .. 3+`n`): a bounded count, all of
/// them really open. An fd that is not open would let one of the runtime's
/// own fds take its number and reach the container.
pub fn checked_preserved_fds(n: u32) -> Result<u32, ContainerError> {
    if n > MAX_PRESERVED_FDS {
        return Err(ContainerError::Other(format!(
            "{n} preserved fds requested, at most {MAX_PRESERVED_FDS}: lower --preserve-fds or LISTEN_FDS"
        )));
    }
    for fd in 3..3 + n as i32 {
        // SAFETY: F_GETFD only reads the fd's flags.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            return Err(ContainerError::Other(format!(
                "preserved fd {fd} is not open: pass --preserve-fds/LISTEN_FDS only for fds the caller opened"
            )));
        }
    }
    Ok(n)
}

/// Options shared by create and run.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// State root.
    pub root: PathBuf,
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Where to write the init pid.
    pub pid_file: Option<PathBuf>,
    /// Console socket path.
    pub console_socket: Option<PathBuf>,
    /// Do not join a new session keyring.
    pub no_new_keyring: bool,
    /// Extra fds to pass (from 3).
    pub preserve_fds: u32,
}

/// pidfd_open(2): lets us wait for a process that is not our child.
pub fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain syscall; the returned fd is ours.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    (r >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

/// Wait until `pid` exits (zombie counts), up to `timeout`.
pub fn wait_exit(pid: i32, start_time: u64, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    match pidfd(pid) {
        Some(fd) => {
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
            n > 0 || !crate::state::process_alive(pid, start_time)
        }
        None => !crate::state::process_alive(pid, start_time),
    }
}

/// Write a pid file atomically (clients poll for it).
pub fn write_pid_file(path: &std::path::Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ContainerError::Io {
            what: format!("write pid file {}", path.display()),
            source,
        })
}
