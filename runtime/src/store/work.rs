//! Private work directories under `<store>/tmp/`. Each is owned through a held
//! lock file next to it, so a crashed owner (even `kill -9`) releases it and
//! the next pull or `berth gc` can tell stale work from live work.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::lock::{self, Lock};
use super::StoreError;

/// A work directory; removed with its lock when dropped.
#[derive(Debug)]
pub struct WorkDir {
    dir: PathBuf,
    lock: Option<Lock>,
}

impl WorkDir {
    pub(crate) fn create(tmp: &Path) -> Result<Self, StoreError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("{}-{:08x}", std::process::id(), nanos);
        let lock_path = tmp.join(format!("{name}.lock"));
        let err = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { what, path, source }
        };
        // The lock exists (and is held) before the directory, so gc never
        // sees a live directory without a held lock.
        let lock = lock::try_lock(&lock_path)
            .map_err(err("cannot lock", &lock_path))?
            .ok_or_else(|| StoreError::Io {
                what: "work lock unexpectedly held",
                path: lock_path.clone(),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            })?;
        let dir = tmp.join(name);
        fs::create_dir(&dir).map_err(err("cannot create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(err("cannot chmod", &dir))?;
        Ok(WorkDir {
            dir,
            lock: Some(lock),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_tree(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove work directory; berth gc will");
        }
        if let Some(l) = self.lock.take() {
            l.remove();
        }
    }
}

/// Removes a tree that may contain read-only directories (rootless unpacks).
pub(super) fn remove_tree(p: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            make_writable(p);
            fs::remove_dir_all(p)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

fn make_writable(p: &Path) {
    if let Ok(m) = fs::symlink_metadata(p) {
        if m.is_dir() {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    make_writable(&e.path());
                }
            }
        }
    }
}

/// Removes the work directories under `tmp` whose owner lock is free (their
/// owner died, even by `kill -9`), and directories without a lock file.
/// Returns the names removed.
pub(crate) fn clean_stale(tmp: &Path) -> Result<Vec<String>, StoreError> {
    let entries = fs::read_dir(tmp).map_err(|source| StoreError::Io {
        what: "cannot list",
        path: tmp.to_path_buf(),
        source,
    })?;
    let names: std::collections::HashSet<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut removed = Vec::new();
    for name in &names {
        if let Some(work) = name.strip_suffix(".lock") {
            let lp = tmp.join(name);
            if let Ok(Some(l)) = lock::try_lock(&lp) {
                let _ = remove_tree(&tmp.join(work));
                l.remove();
                removed.push(work.to_string());
            }
        } else if !tmp.join(format!("{name}.lock")).exists() {
            // A directory without a lock file: its owner died after unlocking
            // (or before creating it); nobody can own it.
            let _ = remove_tree(&tmp.join(name));
            removed.push(name.clone());
        }
    }
    Ok(removed)
}
