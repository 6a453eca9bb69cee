//! The container's filesystem view, built inside its new mount namespace:
//! propagation, the rootfs bind, config mounts ([`mount`]), device nodes
//! ([`devices`]), pivot_root ([`pivot`]) and masked/readonly paths ([`masked`]).

pub mod devices;
pub mod masked;
pub mod mount;
pub mod pivot;

use nix::mount::MsFlags;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Errors while building the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{what} {path}: {source}")]
    Mount {
        what: &'static str,
        path: String,
        source: nix::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("not supported yet: {0}")]
    Unsupported(String),
    #[error("invalid rootfsPropagation {0:?}")]
    Propagation(String),
}

impl From<RootfsError> for crate::process::ProcessError {
    fn from(e: RootfsError) -> Self {
        crate::process::ProcessError::Invalid(e.to_string())
    }
}

/// What the rootfs code needs to know about the container.
pub struct Ctx<'a> {
    /// Absolute rootfs on the host.
    pub rootfs: &'a Path,
    /// Bundle directory (relative bind sources are relative to it).
    pub bundle: &'a Path,
    /// Running inside a user namespace: no mknod, locked mount flags.
    pub userns: bool,
    /// The container has its own network namespace (sysfs may be mounted).
    pub own_netns: bool,
    /// The container has its own cgroup namespace.
    pub own_cgroupns: bool,
}

/// Parse `linux.rootfsPropagation`.
pub fn propagation(p: Option<&str>) -> Result<Option<MsFlags>, RootfsError> {
    Ok(Some(match p {
        None | Some("") => return Ok(None),
        Some("private") => MsFlags::MS_PRIVATE,
        Some("rprivate") => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some("slave") => MsFlags::MS_SLAVE,
        Some("rslave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("shared") => MsFlags::MS_SHARED,
        Some("rshared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("unbindable") => MsFlags::MS_UNBINDABLE,
        Some("runbindable") => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        Some(o) => return Err(RootfsError::Propagation(o.into())),
    }))
}

/// Stop mount events from leaking back to the host, then bind the rootfs
/// onto itself so it is a mount point pivot_root accepts. Returns an
/// O_PATH fd of the rootfs mount used as the root of every resolution.
pub fn prepare(ctx: &Ctx<'_>) -> Result<OwnedFd, RootfsError> {
    // rslave first: a shared "/" would make pivot_root fail and would
    // propagate our mounts to the host. A requested shared propagation is
    // applied after pivot_root (see pivot::finish).
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        what: "make / rslave",
        path: "/".into(),
        source,
    })?;
    nix::mount::mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        what: "bind rootfs",
        path: ctx.rootfs.display().to_string(),
        source,
    })?;
    let fd = std::fs::File::open(ctx.rootfs).map_err(|source| RootfsError::Io {
        what: "open rootfs",
        path: ctx.rootfs.display().to_string(),
        source,
    })?;
    Ok(fd.into())
}

/// Host path of a bind source: relative sources are relative to the bundle.
pub fn source_path(bundle: &Path, src: &Path) -> PathBuf {
    if src.is_absolute() {
        src.into()
    } else {
        bundle.join(src)
    }
}
