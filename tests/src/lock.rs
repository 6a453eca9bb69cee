//! Cross-process locks, so parallel test processes start shared services once.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Blocks until this process holds an exclusive `flock` on `path` (created if
/// missing); the lock is released when the returned guard is dropped.
pub fn exclusive(path: &Path) -> std::io::Result<Flock<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))
}
