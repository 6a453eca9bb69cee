//! process.terminal: a pty created inside the container's devpts whose
//! master is sent over `--console-socket` (SCM_RIGHTS), runc-compatible,
//! so conmon/Podman can attach.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Errors setting up the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("connect console socket {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("process.terminal is true but no --console-socket was given")]
    NoSocket,
}

fn last(what: &'static str) -> ConsoleError {
    ConsoleError::Sys {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Connect to the console socket (done by the runtime before forking).
pub fn connect(path: &Path) -> Result<OwnedFd, ConsoleError> {
    let s =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ConsoleError::Connect {
            path: path.display().to_string(),
            source,
        })?;
    Ok(s.into())
}

/// Create a pty, send its master over `sock`, make the slave our
/// controlling terminal and stdio. Returns the slave's path for /dev/console.
pub fn setup(sock: RawFd, size: Option<(u64, u64)>) -> Result<String, ConsoleError> {
    // SAFETY: plain libc calls on fds we own; buffers are sized as passed.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if master < 0 {
            return Err(last("open /dev/ptmx"));
        }
        let master = OwnedFd::from_raw_fd(master);
        if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
            return Err(last("unlock pty"));
        }
        let mut name = [0 as libc::c_char; 128];
        if libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) != 0 {
            return Err(last("ptsname"));
        }
        let slave_name = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return Err(last("open pty slave"));
        }
        if let Some((h, w)) = size {
            let ws = libc::winsize {
                ws_row: h as u16,
                ws_col: w as u16,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            libc::ioctl(slave, libc::TIOCSWINSZ, &ws);
        }
        send_fd(sock, master.as_raw_fd(), slave_name.as_bytes())?;
        for fd in 0..3 {
            if libc::dup2(slave, fd) < 0 {
                return Err(last("dup pty slave"));
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
        if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
            return Err(last("set controlling terminal"));
        }
        Ok(slave_name)
    }
}

fn send_fd(sock: RawFd, fd: RawFd, payload: &[u8]) -> Result<(), ConsoleError> {
    // SAFETY: msghdr points at stack buffers that outlive sendmsg.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        };
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut RawFd, fd);
        if libc::sendmsg(sock, &msg, 0) < 0 {
            return Err(last("send pty master over the console socket"));
        }
    }
    Ok(())
}
