//! `start`: open the exec fifo's read side, which releases the init, then
//! wait for what the container's [`StartWait`] says, then run poststart
//! hooks.
//!
//! Most containers have nothing left to check after "created": the program,
//! its interpreter and loader were checked, and the identity taken, before
//! it. `start` then returns as soon as the init is released, and a later
//! execve failure is the container's own exit (127, with the reason on its
//! stderr). startContainer hooks (or an identity switch that must come after
//! them) make it read the init's verdict ("0", or "E<message>"); poststart
//! hooks, which the spec runs after the program started, make it wait for
//! execve itself (EOF on the fifo, which is close-on-exec), and an execve
//! failure then fails `start`.

use super::ContainerError;
use crate::state::{self, StartWait, State, Status};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Start a created container.
pub fn start(root: &Path, id: &str) -> crate::Result<()> {
    let st = State::load(root, id)?;
    let status = st.status(root);
    if status != Status::Created {
        return Err(ContainerError::NotCreated {
            id: id.into(),
            status,
        }
        .into());
    }
    let fifo = state::fifo_path(root, id);
    if st.start_wait == StartWait::Nothing {
        release(&fifo, st.pid, st.start_time)?;
        // The fifo's absence is what marks the container "running".
        let _ = std::fs::remove_file(&fifo);
        return Ok(());
    }
    // Non-blocking open: succeeds without a writer, so a dead init cannot
    // hang us; we then poll the fifo together with the init's pidfd.
    let fd = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| ContainerError::Sys {
        what: "open exec fifo".into(),
        source,
    })?;
    let verdict = read_verdict(fd, st.pid, st.start_time, st.start_wait)?;
    let _ = std::fs::remove_file(&fifo);
    match verdict.first() {
        Some(b'0') if verdict.len() == 1 => {}
        Some(b'0') | Some(b'E') => {
            let text = String::from_utf8_lossy(&verdict);
            let msg = text.trim_start_matches('0').trim_start_matches('E');
            return Err(ContainerError::Start(msg.to_string()).into());
        }
        _ => return Err(ContainerError::InitGone.into()),
    }
    if let Some(h) = crate::hooks::poststart(st.hooks.as_ref()) {
        let state = serde_json::to_string(&st.oci(Status::Running)).expect("state serializes");
        crate::hooks::run_all_warn("poststart", &h, &state);
    }
    Ok(())
}

/// Releases an init that has nothing to report: a blocking open of the
/// fifo's read side meets the init's blocking open of the write side,
/// whichever comes first, and both return together (a reader that opened
/// and closed before the init got to its open would leave it waiting for
/// good). Nothing is read: a read would be woken with the pipe's "sync"
/// hint, which can keep us off the CPU until the init has gone on into
/// execve. A periodic SIGALRM interrupts the open so that an init that
/// died cannot hang us.
fn release(fifo: &Path, pid: i32, start_time: u64) -> Result<(), ContainerError> {
    let _tick =
        crate::tick::Tick::every(std::time::Duration::from_millis(20)).map_err(|source| {
            ContainerError::Sys {
                what: "arm a timer".into(),
                source,
            }
        })?;
    loop {
        match nix::fcntl::open(
            fifo,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            // Dropped at once: the init only waited for a reader to come.
            Ok(_fd) => return Ok(()),
            Err(nix::Error::EINTR) if state::process_alive(pid, start_time) => {}
            Err(nix::Error::EINTR) => return Err(ContainerError::InitGone),
            Err(source) => {
                return Err(ContainerError::Sys {
                    what: "open exec fifo".into(),
                    source,
                })
            }
        }
    }
}

/// Reads the init's verdict: up to EOF, or only its first byte when that is
/// "0" and `wait` is not for the execve.
fn read_verdict(
    fd: OwnedFd,
    pid: i32,
    start_time: u64,
    wait: StartWait,
) -> Result<Vec<u8>, ContainerError> {
    let pidfd = super::pidfd(pid);
    let mut f = std::fs::File::from(fd);
    let mut out = Vec::new();
    let mut got_writer = false;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_ref().map_or(-1, |p| p.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, if pidfd.is_some() { -1 } else { 10 }) };
        if n < 0 {
            if nix::Error::last() == nix::Error::EINTR {
                continue;
            }
            return Err(ContainerError::Sys {
                what: "poll exec fifo".into(),
                source: nix::Error::last(),
            });
        }
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            let mut buf = [0u8; 4096];
            match f.read(&mut buf) {
                Ok(0) => {
                    if got_writer || !out.is_empty() {
                        return Ok(out);
                    }
                }
                Ok(k) => {
                    got_writer = true;
                    out.extend_from_slice(&buf[..k]);
                    if wait != StartWait::Exec && out == b"0" {
                        return Ok(out);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(ContainerError::Io {
                        what: "read exec fifo".into(),
                        source: e,
                    })
                }
            }
            continue;
        }
        if fds[1].revents != 0 || (pidfd.is_none() && !state::process_alive(pid, start_time)) {
            // The init died; drain whatever it wrote last.
            let mut rest = Vec::new();
            let _ = f.read_to_end(&mut rest);
            out.extend(rest);
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::{fork, ForkResult};

    /// Runs `release` in a child process against a stand-in init (a
    /// grandchild that runs `init`) and asserts its outcome: `InitGone` when
    /// `want_gone`, else success. A child process, because the tick's
    /// SIGALRM is process-wide and the harness's other threads would take
    /// it too; a release that hangs fails the test after 10 s.
    fn release_with(init: fn(&Path), want_gone: bool) {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("exec.fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        crate::process::fork::assert_in_child(|| {
            // SAFETY: the grandchild runs `init`, then leaves with _exit.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => {
                    init(&fifo);
                    crate::process::fork::exit_child(0)
                }
                ForkResult::Parent { child } => {
                    let pid = child.as_raw();
                    let start_time = state::proc_stat(pid).map_or(0, |(_, t)| t);
                    match release(&fifo, pid, start_time) {
                        Ok(()) => !want_gone,
                        Err(ContainerError::InitGone) => want_gone,
                        Err(_) => false,
                    }
                }
            }
        });
    }

    /// The window `start` cannot close: the init was alive at the status
    /// check and dies before opening its side. The open must not hang.
    #[test]
    fn an_init_that_dies_before_its_open_fails_start() {
        release_with(
            |_| std::thread::sleep(std::time::Duration::from_millis(100)),
            true,
        );
    }

    #[test]
    fn an_init_that_opens_late_is_released() {
        release_with(
            |fifo| {
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            },
            false,
        );
    }
}
