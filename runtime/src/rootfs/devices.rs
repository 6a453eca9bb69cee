//! Device nodes: the spec's default devices plus `linux.devices`, created
//! with mknodat relative to a parent fd resolved inside the rootfs. In a
//! user namespace mknod is not allowed, so the host node is bind-mounted
//! onto an empty file instead.

use super::{Ctx, RootfsError};
use crate::resolve;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A device to create.
#[derive(Debug, Clone)]
pub struct Dev {
    /// Path inside the container.
    pub path: PathBuf,
    /// 'c', 'b', 'p' or 'u'.
    pub kind: char,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// The devices every Linux container gets (runtime spec "Default Devices").
pub fn defaults() -> Vec<Dev> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(n, ma, mi)| Dev {
        path: Path::new("/dev").join(n),
        kind: 'c',
        major: ma,
        minor: mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

impl From<&LinuxDevice> for Dev {
    fn from(d: &LinuxDevice) -> Dev {
        let kind = match d.typ() {
            LinuxDeviceType::B => 'b',
            LinuxDeviceType::P => 'p',
            LinuxDeviceType::U => 'u',
            _ => 'c',
        };
        Dev {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        }
    }
}

fn ierr<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Create all devices and the standard /dev symlinks.
pub fn create_all(ctx: &Ctx<'_>, root: &OwnedFd, devs: &[Dev]) -> Result<(), RootfsError> {
    let mut parents = Parents::default();
    if ctx.userns {
        for d in devs {
            bind_host(root, d)?;
        }
    } else {
        // Modes exactly as configured, with no chmod after each mknod.
        let _umask = Umask::zero();
        // Who a new node belongs to before any chown.
        let me = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        for d in devs {
            mknod(&mut parents, root, d, me)?;
        }
    }
    symlinks(&mut parents, root)
}

/// Parent directories resolved (and made) inside the root, kept for the
/// next node or link in the same directory: nearly all are in /dev.
/// Each entry: the directory, its fd, and whether it is setgid.
#[derive(Default)]
struct Parents(Vec<(PathBuf, OwnedFd, bool)>);

impl Parents {
    /// The parent fd of `path`, whether that directory is setgid (its new
    /// entries take its group), and the final name.
    fn of(
        &mut self,
        root: &OwnedFd,
        path: &Path,
    ) -> std::io::Result<(BorrowedFd<'_>, bool, std::ffi::CString)> {
        let name = path
            .file_name()
            .and_then(|n| std::ffi::CString::new(n.as_encoded_bytes()).ok())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let i = match self.0.iter().position(|(p, _, _)| *p == dir) {
            Some(i) => i,
            None => {
                let fd = resolve::mkdir_all(root.as_fd(), &dir, 0o755)?;
                let st = nix::sys::stat::fstat(&fd)?;
                self.0.push((dir, fd, st.st_mode & libc::S_ISGID != 0));
                self.0.len() - 1
            }
        };
        let (_, fd, setgid) = &self.0[i];
        Ok((fd.as_fd(), *setgid, name))
    }
}

/// The process umask set to 0 while it lives, restored on drop.
struct Umask(libc::mode_t);

impl Umask {
    fn zero() -> Umask {
        // SAFETY: umask cannot fail; the init is single-threaded.
        Umask(unsafe { libc::umask(0) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

/// Makes the node `d`; `me` is our effective (uid, gid), which it gets
/// unless chowned.
fn mknod(
    parents: &mut Parents,
    root: &OwnedFd,
    d: &Dev,
    me: (u32, u32),
) -> Result<(), RootfsError> {
    let (parent, setgid, name) = parents
        .of(root, &d.path)
        .map_err(ierr("create device parent", &d.path))?;
    let fmt = match d.kind {
        'b' => libc::S_IFBLK,
        'p' => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    let node = || {
        // SAFETY: parent is a directory fd and name a valid C string.
        unsafe { libc::mknodat(parent.as_raw_fd(), name.as_ptr(), fmt | d.mode, dev) == 0 }
    };
    if !node() {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(ierr("mknod", &d.path)(e));
        }
        // Replace whatever the image had at that name (a node, a file, or a
        // symlink pointing at the host); unlinkat never follows symlinks.
        // SAFETY: as above.
        unsafe { libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0) };
        if !node() {
            return Err(ierr("mknod", &d.path)(std::io::Error::last_os_error()));
        }
    }
    // A new node is ours, in our group unless the directory is setgid.
    let owned = (d.uid, d.gid) == me && !setgid;
    // SAFETY: valid fd and C string; AT_SYMLINK_NOFOLLOW on the node we made.
    if !owned
        && unsafe {
            libc::fchownat(
                parent.as_raw_fd(),
                name.as_ptr(),
                d.uid,
                d.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } != 0
    {
        return Err(ierr("chown device", &d.path)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn bind_host(root: &OwnedFd, d: &Dev) -> Result<(), RootfsError> {
    let fd = resolve::touch(root.as_fd(), &d.path, 0o644)
        .map_err(ierr("create device mount point", &d.path))?;
    nix::mount::mount(
        Some(&d.path),
        &resolve::fd_path(&fd),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        what: "bind device",
        path: d.path.display().to_string(),
        source,
    })
}

fn symlinks(parents: &mut Parents, root: &OwnedFd) -> Result<(), RootfsError> {
    let mut links = vec![
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let link = Path::new(link);
        let (parent, _, name) = parents.of(root, link).map_err(ierr("create /dev", link))?;
        let t = std::ffi::CString::new(target).expect("static string");
        // SAFETY: valid fd and C strings.
        if unsafe { libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), name.as_ptr()) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(ierr("symlink", link)(e));
            }
        }
    }
    Ok(())
}
