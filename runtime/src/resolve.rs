//! Path resolution confined to the container root with openat2
//! RESOLVE_IN_ROOT: absolute symlinks and `..` are clamped to the root, so a
//! hostile image cannot point a mount destination or device node at the
//! host (CVE-2021-30465 and the `/dev` symlink class). Callers mount onto
//! the returned O_PATH fd via /proc/self/fd/N, so nothing can swap the path
//! between resolution and mount.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// openat2 `resolve` flags (linux/openat2.h).
pub const RESOLVE_NO_XDEV: u64 = 0x01;
/// No /proc magic links.
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// No symlinks at all (ELOOP).
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Fail rather than leave the starting directory.
pub const RESOLVE_BENEATH: u64 = 0x08;
/// Clamp absolute symlinks and `..` to the starting directory.
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) through the raw syscall (glibc 2.36 has no wrapper).
pub fn openat2(dir: BorrowedFd<'_>, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: how and c outlive the call; the kernel copies both.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a fresh fd.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as i32) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a concurrent rename raced the lookup; the kernel asks us to retry.
        if !matches!(e.raw_os_error(), Some(libc::EINTR) | Some(libc::EAGAIN)) {
            return Err(e);
        }
    }
}

/// Open `path` (interpreted inside `root`) as an O_PATH fd.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    openat2(
        root,
        path,
        libc::O_PATH,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    )
}

/// Open `path` inside `root` with explicit open flags.
pub fn open_in_root_flags(root: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    openat2(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
}

/// Path of an fd through procfs, the form mount(2) accepts.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn rel(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

fn name_of(path: &Path) -> io::Result<CString> {
    let n = path
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    CString::new(n.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Make every missing directory of `path` inside `root`, returning an
/// O_PATH fd of the final directory. Each mkdirat is relative to a parent
/// fd that was itself resolved inside the root; a dangling symlink on the
/// way is followed by re-rooting its target, never by the kernel walking
/// out of the rootfs.
pub fn mkdir_all(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    mkdir_all_depth(root, &rel(path), mode, 0)
}

fn mkdir_all_depth(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: u32,
    depth: u32,
) -> io::Result<OwnedFd> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        Err(_) => {}
    }
    let comps: Vec<_> = path.components().collect();
    let mut cur = PathBuf::new();
    let mut fd = open_in_root(root, Path::new("."))?;
    for (i, comp) in comps.iter().enumerate() {
        let parent = cur.clone();
        cur.push(comp);
        match open_in_root(root, &cur) {
            Ok(f) => fd = f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let n = name_of(&cur)?;
                // SAFETY: fd is a valid directory fd and n a valid C string.
                let r = unsafe { libc::mkdirat(fd.as_raw_fd(), n.as_ptr(), mode) };
                if r == 0 {
                    fd = open_in_root(root, &cur)?;
                    continue;
                }
                if io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
                    return Err(io::Error::last_os_error());
                }
                // Exists but does not resolve: a dangling symlink.
                let target = readlinkat(&fd, &n)?;
                let mut next = if target.is_absolute() {
                    rel(&target)
                } else {
                    parent.join(&target)
                };
                for c in &comps[i + 1..] {
                    next.push(c);
                }
                return mkdir_all_depth(root, &normalize(&next), mode, depth + 1);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(fd)
}

fn readlinkat(dir: &OwnedFd, name: &std::ffi::CStr) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: buf is valid for its length.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(buf),
    ))
}

/// Lexically resolve `.` and `..`, clamping at the root (the semantics
/// RESOLVE_IN_ROOT gives `..`).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Make sure a regular file exists at `path` inside `root` (a bind-mount
/// target for a file source) and return its O_PATH fd.
pub fn touch(root: BorrowedFd<'_>, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let path = rel(path);
    match open_in_root(root, &path) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
        Err(_) => {}
    }
    let parent = mkdir_all(root, path.parent().unwrap_or(Path::new("")), 0o755)?;
    let n = name_of(&path)?;
    // O_NOFOLLOW|O_EXCL: never create through a symlink planted at the name.
    // SAFETY: parent is a directory fd and n a valid C string.
    let r = unsafe {
        libc::openat(
            parent.as_raw_fd(),
            n.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
            mode,
        )
    };
    if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
        return Err(io::Error::last_os_error());
    }
    if r >= 0 {
        // SAFETY: r is a fresh fd we own.
        unsafe { libc::close(r) };
    }
    open_in_root(root, &path)
}

/// Parent directory fd (created if needed) plus the final name, for
/// *at(2) calls such as mknodat and symlinkat.
pub fn parent_and_name(root: BorrowedFd<'_>, path: &Path) -> io::Result<(OwnedFd, CString)> {
    let path = rel(path);
    let parent = mkdir_all(root, path.parent().unwrap_or(Path::new("")), 0o755)?;
    Ok((parent, name_of(&path)?))
}
