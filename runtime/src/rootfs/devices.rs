//! Device nodes: the spec's default devices plus `linux.devices`, created
//! with mknodat relative to a parent fd resolved inside the rootfs. In a
//! user namespace mknod is not allowed, so the host node is bind-mounted
//! onto an empty file instead.

use super::{Ctx, RootfsError};
use crate::resolve;
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
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
    for d in devs {
        if ctx.userns {
            bind_host(root, d)?;
        } else {
            mknod(root, d)?;
        }
    }
    symlinks(root)
}

fn mknod(root: &OwnedFd, d: &Dev) -> Result<(), RootfsError> {
    let (parent, name) = resolve::parent_and_name(root.as_fd(), &d.path)
        .map_err(ierr("create device parent", &d.path))?;
    let fmt = match d.kind {
        'b' => libc::S_IFBLK,
        'p' => libc::S_IFIFO,
        _ => libc::S_IFCHR,
    };
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    // SAFETY: parent is a directory fd and name a valid C string.
    unsafe {
        // Replace whatever the image had at that name (a node, a file, or a
        // symlink pointing at the host); unlinkat never follows symlinks.
        libc::unlinkat(parent.as_raw_fd(), name.as_ptr(), 0);
        if libc::mknodat(parent.as_raw_fd(), name.as_ptr(), fmt | d.mode, dev) != 0 {
            return Err(ierr("mknod", &d.path)(std::io::Error::last_os_error()));
        }
        if libc::fchownat(
            parent.as_raw_fd(),
            name.as_ptr(),
            d.uid,
            d.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(ierr("chown device", &d.path)(
                std::io::Error::last_os_error(),
            ));
        }
    }
    // mknod applies the umask; set the exact mode the config asked for.
    let fd = resolve::open_in_root(root.as_fd(), &d.path).map_err(ierr("open device", &d.path))?;
    std::fs::set_permissions(
        resolve::fd_path(&fd),
        std::os::unix::fs::PermissionsExt::from_mode(d.mode),
    )
    .map_err(ierr("chmod device", &d.path))
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

fn symlinks(root: &OwnedFd) -> Result<(), RootfsError> {
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
        let (parent, name) =
            resolve::parent_and_name(root.as_fd(), link).map_err(ierr("create /dev", link))?;
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
