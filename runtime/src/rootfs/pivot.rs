//! Switching root. pivot_root(".", ".") with the old root unmounted lazily
//! afterwards (the runc trick) needs no put_old directory in the image.
//! chroot is only used when there is no mount namespace, where pivot_root
//! would change the host's root.

use super::RootfsError;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::os::fd::OwnedFd;
use std::path::Path;

fn merr(what: &'static str) -> impl FnOnce(nix::Error) -> RootfsError {
    move |source| RootfsError::Mount {
        what,
        path: String::new(),
        source,
    }
}

/// pivot_root into `rootfs` and drop the old root.
pub fn pivot(rootfs: &OwnedFd) -> Result<(), RootfsError> {
    let old = std::fs::File::open("/").map_err(|source| RootfsError::Io {
        what: "open",
        path: "/".into(),
        source,
    })?;
    nix::unistd::fchdir(rootfs).map_err(merr("chdir to rootfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(merr("pivot_root"))?;
    // We are now in the new root with the old root stacked on top of it;
    // step into the old one, stop its events reaching the host, detach it.
    nix::unistd::fchdir(&old).map_err(merr("chdir to old root"))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(merr("make old root rslave"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(merr("unmount old root"))?;
    nix::unistd::chdir("/").map_err(merr("chdir /"))
}

/// chroot fallback when the container has no mount namespace.
pub fn chroot(rootfs: &Path) -> Result<(), RootfsError> {
    nix::unistd::chroot(rootfs).map_err(merr("chroot"))?;
    nix::unistd::chdir("/").map_err(merr("chdir /"))
}

/// Apply a requested root propagation and `root.readonly` after the switch.
pub fn finish(propagation: Option<MsFlags>, readonly: bool) -> Result<(), RootfsError> {
    if let Some(p) = propagation {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(merr("set rootfs propagation"))?;
    }
    if readonly {
        let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        flags |= super::mount::locked_flags(std::path::Path::new("/")) & locked;
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(merr("remount rootfs read-only"))?;
    }
    Ok(())
}
