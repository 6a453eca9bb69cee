//! cgroup placement and limits, only when the caller asks for them
//! (`linux.cgroupsPath` or `linux.resources`): creating a dozen v1
//! directories costs more than the rest of a create. v1 and v2 writers
//! live in their own modules; a limit we cannot apply is an error, never
//! silently dropped.

pub mod v1;
pub mod v2;

use oci_spec::runtime::{LinuxResources, Spec};
use std::path::{Path, PathBuf};

/// Errors creating or configuring cgroups.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not supported yet: {0}")]
    Unsupported(String),
    #[error("cgroup limits were requested but rootless containers cannot use cgroups here; drop linux.resources or run as root")]
    RootlessLimits,
    #[error("invalid cgroupsPath {0:?}: systemd slice syntax needs the systemd cgroup manager, which berth does not implement yet")]
    Systemd(String),
    #[error("invalid cgroupsPath {0:?}: `..` is not allowed (it could leave the cgroup tree)")]
    DotDot(String),
    #[error("cannot remove cgroup {}: still in use after the container's processes were killed: run `berth delete --force` again", .0.display())]
    Busy(PathBuf),
}

/// Where a container was placed: every directory it joins, and those berth
/// made for it (only these are removed at delete; an existing cgroupsPath,
/// made by a caller such as Podman or systemd, is joined and left alone, and
/// so is every parent that existed before).
///
/// A parent berth made is removed by the delete of the container it was made
/// for, unless another container's cgroup is in it by then; that container did
/// not make it, so its own delete leaves it too.
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// Directories the container's processes are added to.
    pub dirs: Vec<PathBuf>,
    /// The subset berth created.
    pub created: Vec<PathBuf>,
    /// The parents of `created` berth created on the way, outermost first.
    pub parents: Vec<PathBuf>,
}

/// How often a `mkdir -p` starts again after a parent vanished under it.
const MKDIR_TRIES: u32 = 10;

impl Placement {
    /// `mkdir -p base/rel` and join it, noting every level berth creates;
    /// `init(parent, new)` prepares each new level.
    pub(crate) fn make(
        &mut self,
        base: &Path,
        rel: &Path,
        init: impl Fn(&Path, &Path),
    ) -> Result<(), CgroupError> {
        let leaf = base.join(rel);
        self.dirs.push(leaf.clone());
        let mut tries = 0;
        'again: loop {
            tries += 1;
            let mut cur = base.to_path_buf();
            for c in rel.components() {
                let parent = cur.clone();
                cur.push(c);
                match std::fs::create_dir(&cur) {
                    Ok(()) if cur == leaf => self.created.push(cur.clone()),
                    // Made again after a retry: already noted.
                    Ok(()) if self.parents.contains(&cur) => {}
                    Ok(()) => self.parents.push(cur.clone()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    // Another container's delete removed a parent it had made
                    // between our steps: walk down again.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < MKDIR_TRIES => {
                        continue 'again
                    }
                    Err(e) => return Err(io(&cur)(e)),
                }
                init(&parent, &cur);
            }
            return Ok(());
        }
    }

    /// Undoes a setup that failed half-way, then passes the error on.
    pub(crate) fn undo(&self, e: CgroupError) -> CgroupError {
        let _ = remove(&self.created, &self.parents);
        e
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.into(),
        source,
    }
}

/// Whether /sys/fs/cgroup is a pure cgroup v2 mount.
pub fn is_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

fn has_limits(r: &LinuxResources) -> bool {
    r.memory().is_some()
        || r.cpu().is_some()
        || r.pids().is_some()
        || r.block_io().is_some()
        || r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty())
        || r.network().is_some()
        || r.rdma().as_ref().is_some_and(|h| !h.is_empty())
        || r.unified().as_ref().is_some_and(|h| !h.is_empty())
        || r.devices()
            .as_ref()
            .is_some_and(|d| d.iter().any(|d| !d.allow()))
}

/// Create the container's cgroup(s) and apply limits. Returns where the
/// container goes (empty when no cgroup was asked for). On error nothing
/// berth created is left behind.
pub fn setup(spec: &Spec, id: &str, rootless: bool) -> Result<Placement, CgroupError> {
    let linux = spec.linux().as_ref();
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let res = linux.and_then(|l| l.resources().clone());
    let limits = res.as_ref().is_some_and(has_limits);
    if path.is_none() && !limits {
        return Ok(Placement::default());
    }
    if rootless {
        if limits {
            return Err(CgroupError::RootlessLimits);
        }
        crate::log::warn(
            "rootless container: cgroupsPath ignored, the container stays in the caller's cgroup",
        );
        return Ok(Placement::default());
    }
    let rel = match &path {
        Some(p) if p.to_string_lossy().contains(':') => {
            return Err(CgroupError::Systemd(p.display().to_string()))
        }
        Some(p) if p.components().any(|c| c == std::path::Component::ParentDir) => {
            return Err(CgroupError::DotDot(p.display().to_string()))
        }
        // Relative paths are placed under berth's own subtree; absolute ones as given.
        Some(p) if p.is_absolute() => p.strip_prefix("/").unwrap_or(p).to_path_buf(),
        Some(p) => Path::new("berth").join(p),
        None => Path::new("berth").join(id),
    };
    let devices = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
    if is_v2() {
        v2::setup(&rel, res.as_ref(), &devices)
    } else {
        v1::setup(&rel, res.as_ref(), &devices)
    }
}

/// Move `pid` into every directory (cgroup.procs works on v1 and v2).
pub fn add(dirs: &[PathBuf], pid: i32) -> Result<(), CgroupError> {
    for d in dirs {
        let f = d.join("cgroup.procs");
        std::fs::write(&f, pid.to_string()).map_err(io(&f))?;
    }
    Ok(())
}

/// Pids currently in the container's cgroup.
pub fn procs(dirs: &[PathBuf]) -> Vec<i32> {
    let Some(d) = dirs.first() else {
        return Vec::new();
    };
    std::fs::read_to_string(d.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Remove the directories berth created (the processes must be gone), then
/// the `parents` it created for them, innermost first. A directory still busy
/// after a grace period is an error, so the caller keeps the state that names
/// it instead of forgetting a live cgroup. A parent that cannot go at once
/// holds another container's cgroup (rmdir fails with EBUSY) and stays.
pub fn remove(dirs: &[PathBuf], parents: &[PathBuf]) -> Result<(), CgroupError> {
    let mut busy = None;
    for d in dirs {
        let mut gone = false;
        for _ in 0..250 {
            match std::fs::remove_dir(d) {
                Ok(()) => gone = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => gone = true,
                // EBUSY until the kernel has finished reaping the last task.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
            if gone {
                break;
            }
        }
        if !gone && busy.is_none() {
            busy = Some(d.clone());
        }
    }
    if let Some(d) = busy {
        return Err(CgroupError::Busy(d));
    }
    for p in parents.iter().rev() {
        let _ = std::fs::remove_dir(p);
    }
    Ok(())
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(io(&p))
}

/// Reject resource sections that neither writer implements.
pub(crate) fn check_unsupported(r: &LinuxResources) -> Result<(), CgroupError> {
    if r.block_io().is_some() {
        return Err(CgroupError::Unsupported("linux.resources.blockIO".into()));
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        return Err(CgroupError::Unsupported(
            "linux.resources.hugepageLimits".into(),
        ));
    }
    if r.network().is_some() {
        return Err(CgroupError::Unsupported("linux.resources.network".into()));
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        return Err(CgroupError::Unsupported("linux.resources.rdma".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Plain directories stand in for a hierarchy: rmdir of a non-empty one
    // fails (ENOTEMPTY where cgroupfs says EBUSY), which is all `remove` needs.

    #[test]
    fn parents_berth_made_go_with_the_cgroup_unless_existing_or_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        std::fs::create_dir(base.join("old")).unwrap();
        let mut one = Placement::default();
        one.make(base, Path::new("old/a/b/c"), |_, _| {}).unwrap();
        assert_eq!(one.dirs, [base.join("old/a/b/c")]);
        assert_eq!(one.created, [base.join("old/a/b/c")]);
        assert_eq!(one.parents, [base.join("old/a"), base.join("old/a/b")]);
        remove(&one.created, &one.parents).unwrap();
        assert!(!base.join("old/a").exists(), "parents berth made are gone");
        assert!(base.join("old").is_dir(), "a parent that existed stays");

        one.make(base, Path::new("old/a/b/c"), |_, _| {}).unwrap();
        // Another container's cgroup in a parent the first one made.
        let mut two = Placement::default();
        two.make(base, Path::new("old/a/d"), |_, _| {}).unwrap();
        assert!(two.parents.is_empty(), "{:?}", two.parents);
        remove(&one.created, &one.parents).unwrap();
        assert!(!base.join("old/a/b").exists());
        assert!(base.join("old/a/d").is_dir(), "a parent in use stays");
    }

    #[test]
    fn a_parent_removed_under_a_create_is_made_again() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let first = std::cell::Cell::new(true);
        let mut p = Placement::default();
        p.make(base, Path::new("a/b"), |_, new| {
            // Another container's delete removes the parent just made.
            if first.replace(false) {
                std::fs::remove_dir(new).unwrap();
            }
        })
        .unwrap();
        assert!(base.join("a/b").is_dir());
        assert_eq!(p.parents, [base.join("a")]);
        remove(&p.created, &p.parents).unwrap();
        assert!(!base.join("a").exists());
    }
}
