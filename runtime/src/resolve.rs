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
    // Up to the deepest ancestor that resolves (usually the parent: one
    // lookup), then down again creating each missing directory.
    let mut have = comps.len();
    let mut fd = loop {
        if have == 0 {
            break open_in_root(root, Path::new("."))?;
        }
        have -= 1;
        let prefix: PathBuf = comps[..have].iter().collect();
        match open_in_root(root, &prefix) {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
    };
    for i in have..comps.len() {
        let name = name_of(Path::new(comps[i].as_os_str()))?;
        // SAFETY: fd is a valid directory fd and name a valid C string.
        if unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), mode) } == 0 {
            // Ours, made just now, so opening it by name from its parent
            // needs no root-confined lookup; O_NOFOLLOW|O_DIRECTORY still
            // refuse anything that is not that directory.
            fd = openat_dir(&fd, &name)?;
            continue;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(io::Error::last_os_error());
        }
        // Exists but did not resolve: a dangling symlink. Follow it by
        // re-rooting its target, never by letting the kernel walk it.
        let target = readlinkat(&fd, &name)?;
        let parent: PathBuf = comps[..i].iter().collect();
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
    Ok(fd)
}

/// O_PATH fd of the directory `name` in `dir`, never through a symlink.
fn openat_dir(dir: &OwnedFd, name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string; the result is a fresh fd we own.
    let r = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn root() -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let fd = std::fs::File::open(dir.path()).unwrap().into();
        (dir, fd)
    }

    fn points_at(fd: &OwnedFd) -> PathBuf {
        std::fs::read_link(fd_path(fd)).unwrap()
    }

    #[test]
    fn mkdir_all_makes_what_is_missing_and_opens_the_rest() {
        let (dir, r) = root();
        let want = dir.path().canonicalize().unwrap().join("a/b/c");
        let fd = mkdir_all(r.as_fd(), Path::new("/a/b/c"), 0o755).unwrap();
        assert!(want.is_dir());
        assert_eq!(points_at(&fd), want);
        // Existing: opened, not made again; a deeper one starts from there.
        assert_eq!(
            points_at(&mkdir_all(r.as_fd(), Path::new("a/b/c"), 0o755).unwrap()),
            want
        );
        let fd = mkdir_all(r.as_fd(), Path::new("a/b/c/d"), 0o755).unwrap();
        assert_eq!(points_at(&fd), want.join("d"));
    }

    #[test]
    fn dangling_symlinks_are_followed_inside_the_root() {
        let (dir, r) = root();
        let base = dir.path().canonicalize().unwrap();
        let host = format!("/berth-resolve-test-{}", std::process::id());
        std::os::unix::fs::symlink(&host, base.join("abs")).unwrap();
        let fd = mkdir_all(r.as_fd(), Path::new("abs/x"), 0o755).unwrap();
        assert_eq!(points_at(&fd), base.join(&host[1..]).join("x"));
        assert!(!Path::new(&host).exists(), "made on the host");
        std::fs::create_dir(base.join("a")).unwrap();
        std::os::unix::fs::symlink("../../../rel", base.join("a/l")).unwrap();
        let fd = mkdir_all(r.as_fd(), Path::new("a/l/z"), 0o755).unwrap();
        assert_eq!(points_at(&fd), base.join("rel/z"));
    }

    #[test]
    fn a_file_on_the_way_is_an_error_and_loops_end() {
        let (dir, r) = root();
        std::fs::write(dir.path().join("f"), "").unwrap();
        let e = mkdir_all(r.as_fd(), Path::new("f/g"), 0o755).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR), "{e}");
        std::os::unix::fs::symlink("/loop", dir.path().join("loop")).unwrap();
        let e = mkdir_all(r.as_fd(), Path::new("loop/x"), 0o755).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
    }
}
