//! `start`: open the exec fifo's read side, which releases the init; read
//! its verdict ("0" when it goes on to execve, "E<message>" when
//! startContainer hooks failed); then run poststart hooks.
//!
//! Like runc, `start` returns once the init is released: the program, its
//! interpreter and loader were checked before "created", and a later execve
//! failure is the container's own exit (127, with the reason on its
//! stderr). Only poststart hooks, which the spec runs after the program
//! started, make `start` wait for execve itself (EOF on the fifo, which is
//! close-on-exec); an execve failure then fails `start`.

use super::ContainerError;
use crate::state::{self, State, Status};
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
    let poststart = crate::hooks::poststart(st.hooks.as_ref());
    let verdict = read_verdict(fd, st.pid, st.start_time, poststart.is_some())?;
    // The fifo's absence is what marks the container "running".
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
    if let Some(h) = poststart {
        let state = serde_json::to_string(&st.oci(Status::Running)).expect("state serializes");
        crate::hooks::run_all_warn("poststart", &h, &state);
    }
    Ok(())
}

/// Reads the init's verdict: up to EOF, or only the first byte when it is
/// "0" and `wait_exec` is false.
fn read_verdict(
    fd: OwnedFd,
    pid: i32,
    start_time: u64,
    wait_exec: bool,
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
                    if !wait_exec && out == b"0" {
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
