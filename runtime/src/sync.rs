//! The runtime <-> init protocol over a SOCK_SEQPACKET socketpair: each
//! datagram is one tag byte plus payload, so no framing code is needed and
//! a peer that dies shows up as end-of-file.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Errors on the sync channel.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("container init exited before reporting")]
    Eof,
    #[error("unexpected sync message {0}")]
    Unexpected(u8),
}

/// Messages exchanged during create/exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// child -> runtime: write my uid/gid maps (pid of the process to map).
    NeedMaps(i32),
    /// runtime -> child: maps written, go on.
    MapsDone,
    /// child -> runtime: the container's init (or exec'd) pid, as seen by the runtime.
    Pid(i32),
    /// child -> runtime: mounts done, run prestart/createRuntime hooks.
    ReadyForHooks,
    /// runtime -> child: hooks done; carries the host pid for the hook state.
    HooksDone(i32),
    /// child -> runtime: container is created and waiting for start.
    Created,
    /// runtime -> child: proceed (exec: cgroup joined).
    Go,
    /// child -> runtime: setup failed with this message.
    Error(String),
    /// child -> runtime: put me in the container's cgroups, then `Go` (the
    /// cgroup namespace I make next is rooted where I am).
    NeedCgroup,
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel(pub OwnedFd);

/// Create a connected pair (both ends close-on-exec).
pub fn pair() -> Result<(Channel, Channel), SyncError> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills the two-element array on success.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe {
        Ok((
            Channel(OwnedFd::from_raw_fd(fds[0])),
            Channel(OwnedFd::from_raw_fd(fds[1])),
        ))
    }
}

impl Channel {
    /// Send one message.
    pub fn send(&self, msg: &Msg) -> Result<(), SyncError> {
        let mut buf = Vec::with_capacity(16);
        buf.push(tag(msg));
        match msg {
            Msg::NeedMaps(p) | Msg::Pid(p) | Msg::HooksDone(p) => {
                buf.extend_from_slice(&p.to_ne_bytes())
            }
            Msg::Error(s) => buf.extend_from_slice(&s.as_bytes()[..s.len().min(60000)]),
            _ => {}
        }
        // SAFETY: buf is valid for buf.len() bytes.
        retry(|| unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        })
        .map(drop)
    }

    /// recv(2) into `buf`, retried on EINTR.
    fn recv_into(&self, buf: &mut [u8], flags: i32) -> Result<usize, SyncError> {
        // SAFETY: buf is valid for buf.len() bytes (none when empty).
        retry(|| unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                flags,
            )
        })
    }

    /// Receive one message; EOF means the peer is gone.
    pub fn recv(&self) -> Result<Msg, SyncError> {
        // Peek at the size first (MSG_TRUNC makes a seqpacket recv return
        // the whole message's length): messages are a few bytes, but an
        // error text can be long, and a buffer sized for the longest would
        // be zeroed and faulted in on every create.
        let len = self.recv_into(&mut [], libc::MSG_PEEK | libc::MSG_TRUNC)?;
        if len == 0 {
            return Err(SyncError::Eof);
        }
        let mut buf = vec![0u8; len];
        let n = self.recv_into(&mut buf, 0)?;
        if n == 0 {
            return Err(SyncError::Eof);
        }
        let int = |b: &[u8]| -> i32 {
            i32::from_ne_bytes(
                b.get(1..5)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or([0; 4]),
            )
        };
        Ok(match buf[0] {
            1 => Msg::NeedMaps(int(&buf[..n])),
            2 => Msg::MapsDone,
            3 => Msg::Pid(int(&buf[..n])),
            4 => Msg::ReadyForHooks,
            5 => Msg::HooksDone(int(&buf[..n])),
            6 => Msg::Created,
            7 => Msg::Go,
            8 => Msg::Error(String::from_utf8_lossy(&buf[1..n]).into_owned()),
            9 => Msg::NeedCgroup,
            t => return Err(SyncError::Unexpected(t)),
        })
    }

    /// Receive and require a specific message; an Error message becomes Err.
    pub fn expect(&self, want: &Msg) -> Result<Msg, crate::Error> {
        match self.recv()? {
            Msg::Error(s) => Err(crate::process::ProcessError::Child(s).into()),
            m if std::mem::discriminant(&m) == std::mem::discriminant(want) => Ok(m),
            m => Err(SyncError::Unexpected(tag(&m)).into()),
        }
    }
}

/// Runs a send/recv-style call until it is not interrupted by a signal;
/// its byte count, or the error.
fn retry(mut call: impl FnMut() -> isize) -> Result<usize, SyncError> {
    loop {
        let r = call();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e.into());
        }
    }
}

/// The byte each message starts with; `recv` maps it back.
fn tag(m: &Msg) -> u8 {
    match m {
        Msg::NeedMaps(_) => 1,
        Msg::MapsDone => 2,
        Msg::Pid(_) => 3,
        Msg::ReadyForHooks => 4,
        Msg::HooksDone(_) => 5,
        Msg::Created => 6,
        Msg::Go => 7,
        Msg::NeedCgroup => 9,
        Msg::Error(_) => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_messages_arrive_whole_then_eof() {
        let (a, b) = pair().unwrap();
        // Longer than a page, within what `send` keeps (60000 bytes).
        let long = "x".repeat(50_000);
        a.send(&Msg::Created).unwrap();
        a.send(&Msg::Error(long.clone())).unwrap();
        drop(a);
        assert!(matches!(b.recv().unwrap(), Msg::Created));
        match b.recv().unwrap() {
            Msg::Error(s) => assert!(s == long, "got {} bytes", s.len()),
            m => panic!("got {m:?}"),
        }
        assert!(matches!(b.recv(), Err(SyncError::Eof)));
    }
}
