//! `mounts` from config.json. Destinations are resolved inside the rootfs
//! (resolve.rs) and mounted through the resolved fd; bind remounts keep the
//! flags the kernel locks in a user namespace.

use super::{Ctx, RootfsError};
use crate::resolve;
use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Parsed mount options.
#[derive(Debug)]
pub struct Options {
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Flags removed by an explicit opposite option ("rw", "suid", ...).
    pub cleared: MsFlags,
    /// Propagation changes applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Bind mount (bind or rbind).
    pub bind: bool,
    /// Recursive bind.
    pub rec: bool,
    /// Filesystem-specific data (comma-joined).
    pub data: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            bind: false,
            rec: false,
            data: String::new(),
        }
    }
}

/// Parse OCI mount options the way mount(8) does.
pub fn parse_options(opts: &[String]) -> Result<Options, RootfsError> {
    let mut o = Options::default();
    let mut data = Vec::new();
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "nosymfollow" => (MsFlags::from_bits_retain(256), MsFlags::empty()),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.rec = true;
                continue;
            }
            p @ ("private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared"
            | "unbindable" | "runbindable") => {
                o.propagation
                    .push(super::propagation(Some(p))?.expect("known propagation"));
                continue;
            }
            "tmpcopyup" | "idmap" | "ridmap" | "copy-symlink" => {
                return Err(RootfsError::Unsupported(format!("mount option {opt}")));
            }
            _ => {
                data.push(opt.as_str());
                continue;
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.cleared = (o.cleared | clear) & !set;
    }
    o.data = data.join(",");
    Ok(o)
}

fn merr<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> RootfsError + 'a {
    move |source| RootfsError::Mount {
        what,
        path: path.display().to_string(),
        source,
    }
}

fn ierr<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> RootfsError + 'a {
    move |source| RootfsError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// Flags the kernel locks on mounts inherited by a user namespace: a
/// remount that drops them fails with EPERM, so we carry them over.
pub(crate) fn locked_flags(target: &Path) -> MsFlags {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(target.as_os_str().as_bytes()) else {
        return MsFlags::empty();
    };
    // SAFETY: an all-zero statvfs is valid, and `c` is a C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return MsFlags::empty();
    }
    // The kernel's ST_* bits of statvfs(3)'s f_flag, spelled out, and read
    // raw: the libc crate names ST_RELATIME for glibc only, and nix drops
    // the bits it has no name for.
    const ST_RDONLY: u64 = 0x1;
    const ST_NOSUID: u64 = 0x2;
    const ST_NODEV: u64 = 0x4;
    const ST_NOEXEC: u64 = 0x8;
    const ST_NOATIME: u64 = 0x400;
    const ST_NODIRATIME: u64 = 0x800;
    const ST_RELATIME: u64 = 0x1000;
    let f = st.f_flag as u64;
    let mut m = MsFlags::empty();
    for (a, b) in [
        (ST_NOSUID, MsFlags::MS_NOSUID),
        (ST_NODEV, MsFlags::MS_NODEV),
        (ST_NOEXEC, MsFlags::MS_NOEXEC),
        (ST_NOATIME, MsFlags::MS_NOATIME),
        (ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (ST_RELATIME, MsFlags::MS_RELATIME),
        (ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f & a != 0 {
            m |= b;
        }
    }
    m
}

/// Re-resolve `dst` after something was mounted on it: the fd we mounted
/// through still names the covered directory, a new lookup crosses into
/// the new mount.
pub fn reopen(root: BorrowedFd<'_>, dst: &Path) -> Result<OwnedFd, RootfsError> {
    resolve::open_in_root(root, dst).map_err(ierr("reopen mount point", dst))
}

/// Bind `src` onto `fd` (the resolved `dst`), then remount with the
/// requested flags (a bind ignores flags on the first call).
pub fn bind(
    src: &Path,
    root: BorrowedFd<'_>,
    dst: &Path,
    fd: &OwnedFd,
    o: &Options,
    userns: bool,
) -> Result<(), RootfsError> {
    let rec = if o.rec {
        MsFlags::MS_REC
    } else {
        MsFlags::empty()
    };
    mount(
        Some(src),
        &resolve::fd_path(fd),
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
    .map_err(merr("bind mount", src))?;
    let want = o.flags & !(MsFlags::MS_REMOUNT);
    if !want.is_empty() {
        let nfd = reopen(root, dst)?;
        let target = resolve::fd_path(&nfd);
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | want;
        if userns {
            flags |= locked_flags(&target) & !MsFlags::MS_RDONLY;
        }
        mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(merr("remount bind", dst))?;
    }
    Ok(())
}

/// Make the destination for a mount: a file for file bind sources, a
/// directory otherwise.
fn destination(
    root: BorrowedFd<'_>,
    m: &Mount,
    src: Option<&Path>,
) -> Result<OwnedFd, RootfsError> {
    let dst = m.destination();
    let is_file = src
        .and_then(|s| std::fs::metadata(s).ok())
        .is_some_and(|md| !md.is_dir());
    let r = if is_file {
        resolve::touch(root, dst, 0o644)
    } else {
        resolve::mkdir_all(root, dst, 0o755)
    };
    r.map_err(ierr("create mount point", dst))
}

/// Mount every entry of `mounts` inside the rootfs.
pub fn mount_all(ctx: &Ctx<'_>, root: &OwnedFd, mounts: &[Mount]) -> Result<(), RootfsError> {
    for m in mounts {
        mount_one(ctx, root.as_fd(), m)?;
    }
    Ok(())
}

fn mount_one(ctx: &Ctx<'_>, root: BorrowedFd<'_>, m: &Mount) -> Result<(), RootfsError> {
    let o = parse_options(m.options().as_deref().unwrap_or(&[]))?;
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if o.bind { "bind" } else { "none" });
    tracing::debug!(destination = %m.destination().display(), typ, "mount");
    if o.bind || typ == "bind" {
        let src = super::source_path(ctx.bundle, m.source().as_deref().unwrap_or(Path::new("")));
        let fd = destination(root, m, Some(&src))?;
        bind(&src, root, m.destination(), &fd, &o, ctx.userns)?;
        return propagate(root, m.destination(), &o);
    }
    let fd = destination(root, m, None)?;
    let target = resolve::fd_path(&fd);
    match typ {
        "cgroup" | "cgroup2" => return cgroup(ctx, root, m, &o),
        _ => {}
    }
    let src: PathBuf = m.source().clone().unwrap_or_else(|| typ.into());
    let data = (!o.data.is_empty()).then_some(o.data.as_str());
    let flags = o.flags & !MsFlags::MS_REMOUNT;
    match mount(Some(&src), &target, Some(typ), flags, data) {
        Ok(()) => {}
        // Without its own network (or ipc) namespace a user namespace may
        // not mount sysfs (or mqueue); bind the host's instead, as runc does.
        Err(nix::Error::EPERM) if ctx.userns && (typ == "sysfs" || typ == "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            let bo = Options {
                flags: o.flags,
                rec: true,
                bind: true,
                ..Default::default()
            };
            bind(Path::new(host), root, m.destination(), &fd, &bo, true)?;
        }
        Err(e) => return Err(merr("mount", m.destination())(e)),
    }
    propagate(root, m.destination(), &o)
}

fn propagate(root: BorrowedFd<'_>, dst: &Path, o: &Options) -> Result<(), RootfsError> {
    if o.propagation.is_empty() {
        return Ok(());
    }
    let fd = reopen(root, dst)?;
    let target = resolve::fd_path(&fd);
    for p in &o.propagation {
        mount(None::<&str>, &target, None::<&str>, *p, None::<&str>)
            .map_err(merr("set propagation", dst))?;
    }
    Ok(())
}

/// A `cgroup` mount. On cgroup v2 hosts we mount cgroup2 (it shows our
/// cgroup namespace root). On v1/hybrid hosts we build a tmpfs with one
/// bind per host hierarchy, each remounted with the requested flags, so
/// "ro" really covers every hierarchy and not just the top.
fn cgroup(ctx: &Ctx<'_>, root: BorrowedFd<'_>, m: &Mount, o: &Options) -> Result<(), RootfsError> {
    let dst = m.destination();
    let fd = resolve::mkdir_all(root, dst, 0o755).map_err(ierr("create mount point", dst))?;
    let target = resolve::fd_path(&fd);
    let flags = o.flags & !MsFlags::MS_REMOUNT;
    if crate::cgroups::is_v2() {
        return match mount(
            Some("cgroup2"),
            &target,
            Some("cgroup2"),
            flags,
            None::<&str>,
        ) {
            Ok(()) => Ok(()),
            Err(nix::Error::EPERM) if ctx.userns => {
                let bo = Options {
                    flags,
                    bind: true,
                    rec: true,
                    ..Default::default()
                };
                bind(Path::new("/sys/fs/cgroup"), root, dst, &fd, &bo, true)
            }
            Err(e) => Err(merr("mount cgroup2", dst)(e)),
        };
    }
    let tmpfs_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("tmpfs"),
        &target,
        Some("tmpfs"),
        tmpfs_flags,
        Some("mode=755"),
    )
    .map_err(merr("mount cgroup tmpfs", dst))?;
    let entries =
        std::fs::read_dir("/sys/fs/cgroup").map_err(ierr("list", Path::new("/sys/fs/cgroup")))?;
    let bo = Options {
        flags: flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        bind: true,
        ..Default::default()
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let host = e.path();
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let sub = dst.join(&name);
        let sfd =
            resolve::mkdir_all(root, &sub, 0o755).map_err(ierr("create mount point", &sub))?;
        bind(&host, root, &sub, &sfd, &bo, ctx.userns)?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let top = reopen(root, dst)?;
        mount(
            None::<&str>,
            &resolve::fd_path(&top),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | tmpfs_flags,
            None::<&str>,
        )
        .map_err(merr("remount cgroup tmpfs read-only", dst))?;
    }
    Ok(())
}
