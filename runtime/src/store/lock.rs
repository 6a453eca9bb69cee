//! `flock(2)` locks on files in the store. flock is what NFSv4 (via byte-range
//! lock emulation) and Lustre (with the `flock` mount option) make cluster-wide;
//! see docs/store.md. Lock files are re-checked after locking so that `gc` can
//! delete them without two processes ending up holding "the same" lock.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A held exclusive lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    // Held only for its flock, released on drop.
    _file: File,
    path: PathBuf,
}

impl Lock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the lock file while still holding the lock, then releases it.
    pub fn remove(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn try_flock(f: &File) -> io::Result<bool> {
    // SAFETY: valid fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) | Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

/// Tries once to take the lock; None when another process holds it.
pub fn try_lock(path: &Path) -> io::Result<Option<Lock>> {
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        if !try_flock(&file)? {
            return Ok(None);
        }
        // Locked an inode that gc unlinked meanwhile? Then it protects nothing: retry.
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.ino() == file.metadata()?.ino() => {
                return Ok(Some(Lock {
                    _file: file,
                    path: path.to_path_buf(),
                }))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Deletes the lock file at `path` when nobody holds its lock; true when it
/// did. A held lock is never touched, and a waiter that opened the file
/// before it went locks a fresh one instead (see [`try_lock`]).
pub fn remove_if_free(path: &Path) -> io::Result<bool> {
    Ok(try_lock(path)?.map(Lock::remove).is_some())
}

/// Takes the lock, polling until `timeout`; Ok(None) when it timed out.
/// Polling (rather than a blocking flock) keeps the wait bounded on every
/// filesystem, including NFS where a blocking lock may not be interruptible.
pub fn lock(path: &Path, timeout: Duration) -> io::Result<Option<Lock>> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(l) = try_lock(path)? {
            return Ok(Some(l));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_and_times_out() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        let held = lock(&p, Duration::from_secs(1))
            .unwrap()
            .expect("first lock");
        // flock locks are per open file description: a second open conflicts even in-process.
        assert!(try_lock(&p).unwrap().is_none());
        assert!(lock(&p, Duration::from_millis(50)).unwrap().is_none());
        held.remove();
        assert!(!p.exists());
        assert!(try_lock(&p).unwrap().is_some());
    }
}
