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
/// made by a caller such as Podman or systemd, is joined and left alone).
#[derive(Debug, Default, Clone)]
pub struct Placement {
    /// Directories the container's processes are added to.
    pub dirs: Vec<PathBuf>,
    /// The subset berth created.
    pub created: Vec<PathBuf>,
}

impl Placement {
    /// Adds `dir`, noting whether berth is about to create it.
    pub(crate) fn push(&mut self, dir: PathBuf) {
        if !dir.exists() {
            self.created.push(dir.clone());
        }
        self.dirs.push(dir);
    }

    /// Undoes a setup that failed half-way, then passes the error on.
    pub(crate) fn undo(&self, e: CgroupError) -> CgroupError {
        let _ = remove(&self.created);
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

/// Remove the directories berth created (the processes must be gone). A
/// directory still busy after a grace period is an error, so the caller keeps
/// the state that names it instead of forgetting a live cgroup.
pub fn remove(dirs: &[PathBuf]) -> Result<(), CgroupError> {
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
    busy.map_or(Ok(()), |d| Err(CgroupError::Busy(d)))
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
