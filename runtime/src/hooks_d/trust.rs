//! Root runs hooks.d binaries with full privileges, so everything that decides
//! what runs must be root's alone (Sarus's rule): the hooks directory, each
//! JSON file, each hook binary, and every directory above them must be owned
//! by root and not writable by group or others. A root-owned sticky directory
//! (`/tmp`, `/var/tmp`) is accepted as a *parent*: others may create entries
//! there but cannot rename or remove root's. Symlinks on the way are checked
//! too (they must be root-owned), and so is the path they lead to.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::HooksDError;

/// Checks `path` and every directory above it, both as written and after
/// resolving symlinks.
pub fn check(path: &Path) -> Result<(), HooksDError> {
    Trust::default().check(path)
}

/// Checks many paths, each ancestor directory once: the hooks directory,
/// its files and the hook binaries mostly share their parents.
#[derive(Default)]
pub struct Trust {
    /// `(path, last)` pairs already found trustworthy.
    passed: HashSet<(PathBuf, bool)>,
}

impl Trust {
    /// [`check`], skipping the entries this checker already passed.
    pub fn check(&mut self, path: &Path) -> Result<(), HooksDError> {
        let read = |p: &Path| {
            let p = p.to_path_buf();
            move |source| HooksDError::Read { path: p, source }
        };
        self.check_chain(path)?;
        let real = std::fs::canonicalize(path).map_err(read(path))?;
        if real != path {
            self.check_chain(&real)?;
        }
        Ok(())
    }

    /// Walks `/`, `/a`, `/a/b`, ... up to `path` with lstat; a `..` steps
    /// back lexically (the resolved path is checked separately).
    fn check_chain(&mut self, path: &Path) -> Result<(), HooksDError> {
        let mut prefix = PathBuf::from("/");
        let parts: Vec<Component> = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
            .collect();
        self.check_once(&prefix, parts.is_empty())?;
        for (i, c) in parts.iter().enumerate() {
            match c {
                Component::ParentDir => {
                    prefix.pop();
                }
                _ => {
                    prefix.push(c);
                    self.check_once(&prefix, i + 1 == parts.len())?;
                }
            }
        }
        Ok(())
    }

    fn check_once(&mut self, p: &Path, last: bool) -> Result<(), HooksDError> {
        let key = (p.to_path_buf(), last);
        if !self.passed.contains(&key) {
            check_one(p, last)?;
            self.passed.insert(key);
        }
        Ok(())
    }
}

fn check_one(p: &Path, last: bool) -> Result<(), HooksDError> {
    let m = std::fs::symlink_metadata(p).map_err(|source| HooksDError::Read {
        path: p.into(),
        source,
    })?;
    let insecure = |reason: &str| HooksDError::Insecure {
        path: p.into(),
        reason: reason.into(),
    };
    if m.uid() != 0 {
        return Err(insecure(&format!("owned by uid {}, not root", m.uid())));
    }
    if m.file_type().is_symlink() {
        // A symlink's own mode bits mean nothing; its target is checked by the
        // caller through the resolved path.
        return Ok(());
    }
    let mode = m.permissions().mode();
    let sticky_parent = !last && m.is_dir() && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_parent {
        return Err(insecure("group- or world-writable"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// A 0755 directory holding a 0644 file, under /tmp (sticky, root's).
    fn tree() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let f = d.path().join("10-x.json");
        std::fs::write(&f, "{}").unwrap();
        (d, f)
    }

    #[test]
    fn root_owned_files_under_a_sticky_tmp_are_trusted() {
        if !root() {
            return; // ownership by root can only be arranged as root
        }
        let (d, f) = tree();
        check(&f).unwrap();
        check(Path::new("/bin/sh")).unwrap(); // through the /bin -> usr/bin symlink
        check(
            &d.path()
                .join("../")
                .join(d.path().file_name().unwrap())
                .join("10-x.json"),
        )
        .unwrap();
    }

    #[test]
    fn a_file_or_directory_of_another_user_is_refused() {
        if !root() {
            return;
        }
        let (d, f) = tree();
        std::os::unix::fs::chown(&f, Some(4242), None).unwrap();
        let e = check(&f).unwrap_err().to_string();
        assert!(e.contains("10-x.json") && e.contains("uid 4242"), "{e}");
        std::os::unix::fs::chown(&f, Some(0), None).unwrap();
        std::os::unix::fs::chown(d.path(), Some(4242), None).unwrap();
        let e = check(&f).unwrap_err().to_string();
        assert!(
            e.contains(&d.path().display().to_string()) && e.contains("uid 4242"),
            "{e}"
        );
    }

    #[test]
    fn one_checker_passes_shared_parents_once_but_checks_every_file() {
        if !root() {
            return;
        }
        let (d, f) = tree();
        let bad = d.path().join("20-y.json");
        std::fs::write(&bad, "{}").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o666)).unwrap();
        let mut t = Trust::default();
        t.check(&f).unwrap();
        let before = t.passed.len();
        let e = t.check(&bad).unwrap_err().to_string();
        assert!(e.contains("20-y.json") && e.contains("writable"), "{e}");
        // The shared parents were not recorded twice.
        assert_eq!(t.passed.len(), before);
        t.check(&f).unwrap();
    }

    #[test]
    fn group_or_world_writable_entries_are_refused_even_when_sticky() {
        if !root() {
            return;
        }
        let (d, f) = tree();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).unwrap();
        let e = check(&f).unwrap_err().to_string();
        assert!(
            e.contains("group- or world-writable") && e.contains("chmod go-w"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check(&f).is_err(), "a g+w parent directory");
        // Sticky and world-writable: fine as a parent, not as the checked entry.
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        check(&f).unwrap();
        assert!(check(d.path()).is_err());
    }

    #[test]
    fn a_symlink_to_an_untrusted_file_is_refused() {
        if !root() {
            return;
        }
        let (d, f) = tree();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(other.path(), Some(4242), None).unwrap();
        let target = other.path().join("hook");
        std::fs::write(&target, "").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = check(&link).unwrap_err().to_string();
        assert!(e.contains("uid 4242"), "{e}");
        drop(f);
    }
}
