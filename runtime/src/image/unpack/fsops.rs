//! File-system primitives for the unpacker that never leave the staging root:
//! every lookup is an `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, every
//! change is an `*at` call on a directory fd obtained that way, so a symlink in
//! the image (or a race) cannot redirect a write to the host.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::resolve::{
    openat2, RESOLVE_BENEATH, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_NO_XDEV,
};

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Opens `path` (relative, `/`-separated, no `..`) beneath `dir` without
/// following any symlink: ELOOP means a component is a symlink.
pub fn open_beneath(dir: BorrowedFd, path: &[u8], flags: libc::c_int) -> io::Result<OwnedFd> {
    let path = if path.is_empty() { b"." } else { path };
    // RESOLVE_NO_SYMLINKS covers every component, the last one included (ELOOP).
    openat2(
        dir,
        std::path::Path::new(std::ffi::OsStr::from_bytes(path)),
        flags,
        RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
    )
}

/// Opens the directory `path` beneath `root`, creating missing components
/// (mode 0755, like `mkdir -p`); never follows a symlink.
pub fn ensure_dir(root: BorrowedFd, path: &[u8]) -> io::Result<OwnedFd> {
    match open_beneath(root, path, libc::O_PATH | libc::O_DIRECTORY) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        other => return other,
    }
    let mut cur = open_beneath(root, b"", libc::O_PATH | libc::O_DIRECTORY)?;
    for comp in path.split(|b| *b == b'/') {
        let c = cstr(comp)?;
        // SAFETY: valid fd and C string.
        let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
        if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Err(io::Error::last_os_error());
        }
        cur = open_beneath(cur.as_fd(), comp, libc::O_PATH | libc::O_DIRECTORY)?;
    }
    Ok(cur)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; None when absent.
pub fn lstat_at(dir: BorrowedFd, name: &[u8]) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid fd, C string and out pointer.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    // SAFETY: fstatat succeeded and filled it.
    Ok(Some(unsafe { st.assume_init() }))
}

/// True when the mode is a directory.
pub fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Removes `name` in `dir` and, for a directory, everything below it; never
/// follows symlinks. Absent is fine.
pub fn remove_all(dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    let c = cstr(name)?;
    if is_dir(&st) {
        let sub = open_beneath(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
        for child in list_dir(&sub)? {
            remove_all(sub.as_fd(), &child)?;
        }
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })?;
    } else {
        // SAFETY: valid fd and C string.
        check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })?;
    }
    Ok(())
}

/// The names in a directory opened for reading (without `.` and `..`).
pub fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: dup gives an fd that fdopendir may own and close.
    let dup = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a valid directory fd owned by the DIR stream from here on.
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so the fd is still ours.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: rewind so a reused fd lists from the start.
    unsafe { libc::rewinddir(d) };
    let mut out = Vec::new();
    loop {
        // SAFETY: d is a valid DIR stream.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: readdir returns a valid entry with a NUL-terminated name.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    // SAFETY: d is valid and closed once.
    unsafe { libc::closedir(d) };
    Ok(out)
}

/// Creates a new regular file `name` in `dir` for writing (never through a symlink).
pub fn create_file(dir: BorrowedFd, name: &[u8]) -> io::Result<std::fs::File> {
    let c = cstr(name)?;
    let flags = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid fd and C string.
    let fd = check(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o600) })?;
    // SAFETY: a fresh fd we own.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// `mkdirat`.
pub fn mkdir(dir: BorrowedFd, name: &[u8], mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

/// `symlinkat`: the target is stored verbatim and never resolved here.
pub fn symlink(dir: BorrowedFd, name: &[u8], target: &[u8]) -> io::Result<()> {
    let (c, t) = (cstr(name)?, cstr(target)?);
    // SAFETY: valid fd and C strings.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) }).map(drop)
}

/// `linkat` without following a symlink target.
pub fn hardlink(from_dir: BorrowedFd, from: &[u8], dir: BorrowedFd, name: &[u8]) -> io::Result<()> {
    let (f, c) = (cstr(from)?, cstr(name)?);
    // SAFETY: valid fds and C strings.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            f.as_ptr(),
            dir.as_raw_fd(),
            c.as_ptr(),
            0,
        )
    })
    .map(drop)
}

/// `mknodat` for devices and FIFOs.
pub fn mknod(dir: BorrowedFd, name: &[u8], mode: u32, dev: libc::dev_t) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) }).map(drop)
}

/// Owner, mode and mtime of `name` in `dir` without following symlinks
/// (chown first: it clears setuid bits). `chown` is skipped when None.
pub fn set_meta(
    dir: BorrowedFd,
    name: &[u8],
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    mtime: i64,
) -> io::Result<()> {
    let c = cstr(name)?;
    if let Some((uid, gid)) = owner {
        // SAFETY: valid fd and C string.
        check(unsafe {
            libc::fchownat(
                dir.as_raw_fd(),
                c.as_ptr(),
                uid,
                gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
    }
    if let Some(m) = mode {
        // SAFETY: valid fd and C string; symlinks never get here (mode None).
        check(unsafe { libc::fchmodat(dir.as_raw_fd(), c.as_ptr(), m, 0) })?;
    }
    let t = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: valid fd, C string, two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Sets an extended attribute on an open file.
pub fn set_xattr(f: &impl AsRawFd, key: &OsStr, value: &[u8]) -> io::Result<()> {
    let k = cstr(key.as_bytes())?;
    // SAFETY: valid fd, C string, buffer and length.
    check(unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
    .map(drop)
}
