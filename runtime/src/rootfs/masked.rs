//! `linux.maskedPaths` and `linux.readonlyPaths`, applied after pivot_root
//! so every path is looked up in the container's own tree (still through
//! RESOLVE_IN_ROOT, so a symlink cannot redirect a mask elsewhere).

use super::RootfsError;
use crate::resolve;
use nix::mount::{mount, MsFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

fn merr<'a>(what: &'static str, p: &'a str) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |source| RootfsError::Mount {
        what,
        path: p.into(),
        source,
    }
}

fn open(root: &OwnedFd, p: &str) -> Result<Option<OwnedFd>, RootfsError> {
    match resolve::open_in_root(root.as_fd(), Path::new(p)) {
        Ok(fd) => Ok(Some(fd)),
        // A path that does not exist needs no mask.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(source) => Err(RootfsError::Io {
            what: "resolve",
            path: p.into(),
            source,
        }),
    }
}

/// Cover each path: directories with an empty read-only tmpfs, anything
/// else with /dev/null.
pub fn mask(root: &OwnedFd, paths: &[String]) -> Result<(), RootfsError> {
    for p in paths {
        let Some(fd) = open(root, p)? else { continue };
        let target = resolve::fd_path(&fd);
        let is_dir =
            nix::sys::stat::fstat(&fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if is_dir {
            mount(
                Some("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k,nr_inodes=1"),
            )
            .map_err(merr("mask", p))?;
        } else {
            mount(
                Some("/dev/null"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(merr("mask", p))?;
        }
    }
    Ok(())
}

/// Make each path read-only with a bind remount that keeps its locked flags.
pub fn readonly(root: &OwnedFd, paths: &[String], userns: bool) -> Result<(), RootfsError> {
    for p in paths {
        let Some(fd) = open(root, p)? else { continue };
        let target = resolve::fd_path(&fd);
        mount(
            Some(&target),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(merr("bind readonly path", p))?;
        let o = super::mount::Options {
            flags: MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            ..Default::default()
        };
        let nfd = super::mount::reopen(root.as_fd(), Path::new(p))?;
        let t2 = resolve::fd_path(&nfd);
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | o.flags;
        if userns {
            // Keep atime flags the kernel may have locked.
            flags |= MsFlags::MS_RELATIME;
        }
        if let Err(e) = mount(None::<&str>, &t2, None::<&str>, flags, None::<&str>) {
            if !userns {
                return Err(merr("remount readonly path", p)(e));
            }
            mount(
                None::<&str>,
                &t2,
                None::<&str>,
                flags & !MsFlags::MS_RELATIME,
                None::<&str>,
            )
            .map_err(merr("remount readonly path", p))?;
        }
    }
    Ok(())
}
