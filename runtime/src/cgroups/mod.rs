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

/// Create the container's cgroup(s) and apply limits. Returns the created
/// directories (empty when no cgroup was asked for).
pub fn setup(spec: &Spec, id: &str, rootless: bool) -> Result<Vec<PathBuf>, CgroupError> {
    let linux = spec.linux().as_ref();
    let path = linux.and_then(|l| l.cgroups_path().clone());
    let res = linux.and_then(|l| l.resources().clone());
    let limits = res.as_ref().is_some_and(has_limits);
    if path.is_none() && !limits {
        return Ok(Vec::new());
    }
    if rootless {
        if limits {
            return Err(CgroupError::RootlessLimits);
        }
        crate::log::warn(
            "rootless container: cgroupsPath ignored, the container stays in the caller's cgroup",
        );
        return Ok(Vec::new());
    }
    let rel = match &path {
        Some(p) if p.to_string_lossy().contains(':') => {
            return Err(CgroupError::Systemd(p.display().to_string()))
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

/// Remove the directories berth created (the processes must be gone).
pub fn remove(dirs: &[PathBuf]) {
    for d in dirs {
        for _ in 0..50 {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                // EBUSY until the kernel has finished reaping the last task.
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(2)),
            }
        }
    }
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
