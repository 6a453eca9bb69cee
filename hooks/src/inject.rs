//! Changes to a container's rootfs made from a hook, after
//! [`crate::Container::enter_mount_ns`]. Every container path is resolved
//! inside the rootfs (openat2 RESOLVE_IN_ROOT through the runtime's
//! `resolve` module) and mounted through the resolved fd, so a symlink in the
//! image can never redirect a mount or a write to the host.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth::resolve;
use berth::rootfs::mount::{bind, parse_options};

/// Errors changing the rootfs.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The rootfs itself cannot be opened.
    #[error("cannot open the container rootfs {}: {source}", path.display())]
    Root {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A container path cannot be resolved or created.
    #[error("cannot {what} {} in the container: {source}", path.display())]
    Path {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The host source does not exist.
    #[error("host path {} does not exist: {source}", path.display())]
    Source {
        path: PathBuf,
        source: std::io::Error,
    },
    /// mount(2) failed.
    #[error("cannot bind {} onto {} in the container: {reason}", src.display(), dst.display())]
    Mount {
        src: PathBuf,
        dst: PathBuf,
        reason: String,
    },
}

/// How a host path is bound into the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only, nosuid, nodev: libraries, tools, configuration.
    ReadOnly,
    /// Writable, nosuid, nodev: sockets and scratch directories.
    ReadWrite,
    /// A device node: nosuid, but device access kept.
    Device,
}

impl Access {
    fn options(self) -> Vec<String> {
        let o: &[&str] = match self {
            Access::ReadOnly => &["bind", "ro", "nosuid", "nodev"],
            Access::ReadWrite => &["bind", "nosuid", "nodev"],
            Access::Device => &["bind", "nosuid"],
        };
        o.iter().map(|s| s.to_string()).collect()
    }
}

/// A container rootfs, opened once.
#[derive(Debug)]
pub struct Rootfs {
    path: PathBuf,
    fd: OwnedFd,
}

impl Rootfs {
    /// Opens the rootfs at `path` (as seen in the current mount namespace).
    pub fn open(path: &Path) -> Result<Self, InjectError> {
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| InjectError::Root {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        // The real path of what was opened: resolve() strips it from the
        // kernel's view of an fd, which has every symlink (say /scratch ->
        // /lus/scratch) already followed.
        let real = std::fs::read_link(resolve::fd_path(&fd)).unwrap_or_else(|_| path.to_path_buf());
        Ok(Rootfs { path: real, fd })
    }

    /// The rootfs path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when `dst` exists in the container (a dangling symlink counts as
    /// missing).
    pub fn exists(&self, dst: &Path) -> bool {
        resolve::open_in_root(self.fd.as_fd(), dst).is_ok()
    }

    /// True when `dst` (resolved inside the root) lies on the root's own
    /// filesystem, not on a mount inside it. Both sides are stat'ed through
    /// fds, so no host path or symlink outside the root is followed.
    pub fn same_fs(&self, dst: &Path) -> bool {
        let dev =
            |fd: std::os::fd::BorrowedFd<'_>| nix::sys::stat::fstat(fd).map(|s| s.st_dev).ok();
        let Ok(fd) = resolve::open_in_root(self.fd.as_fd(), dst) else {
            return false;
        };
        dev(fd.as_fd()).is_some_and(|d| Some(d) == dev(self.fd.as_fd()))
    }

    /// Where `dst` really is, after resolving its symlinks inside the root:
    /// a container path (starting with `/`).
    pub fn resolve(&self, dst: &Path) -> Option<PathBuf> {
        let fd = resolve::open_in_root(self.fd.as_fd(), dst).ok()?;
        let real = std::fs::read_link(resolve::fd_path(&fd)).ok()?;
        let rel = real.strip_prefix(&self.path).ok()?;
        Some(Path::new("/").join(rel))
    }

    /// Reads the file `dst` of the container.
    pub fn read(&self, dst: &Path) -> Result<Vec<u8>, InjectError> {
        let mut buf = Vec::new();
        self.open_file(dst)?
            .read_to_end(&mut buf)
            .map_err(path_err("read", dst))?;
        Ok(buf)
    }

    /// Opens the file `dst` of the container for reading (to read only part
    /// of a large file, such as an ELF header).
    pub fn open_file(&self, dst: &Path) -> Result<std::fs::File, InjectError> {
        let fd =
            resolve::open_in_root_flags(self.fd.as_fd(), dst, libc::O_RDONLY | libc::O_CLOEXEC)
                .map_err(path_err("read", dst))?;
        Ok(std::fs::File::from(fd))
    }

    /// Binds host `src` (file, directory or device node) onto `dst` in the
    /// container, creating the mount point; an existing file is covered.
    pub fn bind(&self, src: &Path, dst: &Path, access: Access) -> Result<(), InjectError> {
        let md = std::fs::metadata(src).map_err(|source| InjectError::Source {
            path: src.to_path_buf(),
            source,
        })?;
        let fd = self.mount_point(dst, md.is_dir())?;
        let mount_err = |reason: String| InjectError::Mount {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            reason,
        };
        let opts = parse_options(&access.options()).map_err(|e| mount_err(e.to_string()))?;
        bind(src, self.fd.as_fd(), dst, &fd, &opts, false).map_err(|e| mount_err(e.to_string()))
    }

    /// Writes `contents` to the new or existing file `dst` with `mode`
    /// (container files the hook generates: wrappers, configuration).
    /// The file is written beside `dst` and renamed over it, so a failed
    /// write leaves the old file whole; a symlink at `dst` is refused
    /// (ELOOP), never followed.
    pub fn write(&self, dst: &Path, contents: &[u8], mode: u32) -> Result<(), InjectError> {
        use nix::fcntl::{renameat, OFlag};
        use nix::sys::stat::{fstatat, Mode, SFlag};
        use nix::unistd::{unlinkat, UnlinkatFlags};
        let (parent, name) =
            resolve::parent_and_name(self.fd.as_fd(), dst).map_err(path_err("create", dst))?;
        if fstatat(
            &parent,
            name.as_c_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_ok_and(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
        {
            let loop_err = std::io::Error::from_raw_os_error(libc::ELOOP);
            return Err(path_err("write", dst)(loop_err));
        }
        let mut tmp = b".".to_vec();
        tmp.extend(name.as_bytes());
        tmp.extend(format!(".berth-tmp-{}", std::process::id()).bytes());
        let tmp = std::ffi::CString::new(tmp).expect("a C string's bytes and a pid hold no NUL");
        // Left by an earlier run that had this pid and was killed.
        let _ = unlinkat(&parent, tmp.as_c_str(), UnlinkatFlags::NoRemoveDir);
        let fd = nix::fcntl::openat(
            &parent,
            tmp.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .map_err(|e| path_err("create", dst)(e.into()))?;
        let mut f = std::fs::File::from(fd);
        use std::os::unix::fs::PermissionsExt;
        let written = f
            .write_all(contents)
            .map_err(path_err("write", dst))
            .and_then(|()| {
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(path_err("chmod", dst))
            })
            .and_then(|()| {
                renameat(&parent, tmp.as_c_str(), &parent, name.as_c_str())
                    .map_err(|e| path_err("replace", dst)(e.into()))
            });
        if written.is_err() {
            let _ = unlinkat(&parent, tmp.as_c_str(), UnlinkatFlags::NoRemoveDir);
        }
        written
    }

    /// Makes `dst` a symlink to `target` (e.g. a soname link to a library
    /// beside it), replacing a file or symlink already there (an image's
    /// stale copy); a directory at `dst` is an error.
    pub fn symlink(&self, target: &Path, dst: &Path) -> Result<(), InjectError> {
        let (parent, name) =
            resolve::parent_and_name(self.fd.as_fd(), dst).map_err(path_err("create", dst))?;
        let name = Path::new(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()),
        );
        match nix::unistd::unlinkat(&parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(path_err("replace", dst)(e.into())),
        }
        nix::unistd::symlinkat(target, &parent, name).map_err(|e| path_err("link", dst)(e.into()))
    }

    /// Makes the directory `dst` (and its parents) in the container.
    pub fn mkdir(&self, dst: &Path) -> Result<(), InjectError> {
        self.mount_point(dst, true).map(drop)
    }

    /// Resolves `dst` inside the root, creating it (and its parents) when
    /// missing: a directory when `dir`, else an empty file; what exists is
    /// kept. The one way hooks make a bind destination, like the runtime's
    /// mounts do (whose helper is private to it): a symlink in the image is
    /// re-rooted, never followed to the host, and the fd returned is what
    /// gets mounted on, so the path cannot be swapped in between.
    pub fn mount_point(&self, dst: &Path, dir: bool) -> Result<OwnedFd, InjectError> {
        if dir {
            resolve::mkdir_all(self.fd.as_fd(), dst, 0o755)
        } else {
            resolve::touch(self.fd.as_fd(), dst, 0o644)
        }
        .map_err(path_err("create", dst))
    }
}

fn path_err<'a>(what: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> InjectError + 'a {
    move |source| InjectError::Path {
        what,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rootfs (first) whose `/escape` is a symlink to a host directory
    /// (second), to show nothing is made through it.
    fn root_with_escape() -> (tempfile::TempDir, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("escape")).unwrap();
        (dir, outside)
    }

    #[test]
    fn resolve_and_read_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/libx.so.1"), b"inside").unwrap();
        // An absolute symlink is re-rooted, never followed to the host.
        std::os::unix::fs::symlink("/usr/lib/libx.so.1", root.join("usr/lib/libx.so")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
        let r = Rootfs::open(root).unwrap();
        assert_eq!(
            r.resolve(Path::new("/usr/lib/libx.so")).unwrap(),
            Path::new("/usr/lib/libx.so.1")
        );
        assert_eq!(r.read(Path::new("usr/lib/libx.so")).unwrap(), b"inside");
        assert!(!r.exists(Path::new("/passwd")));
        assert!(r.read(Path::new("/passwd")).is_err());
    }

    #[test]
    fn same_fs_sees_mounts_inside_the_root_and_never_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("home/u")).unwrap();
        std::fs::create_dir_all(root.join("mnt")).unwrap();
        // /proc is another filesystem on the host: a symlink to it must be
        // resolved inside the root (where it does not exist), not followed.
        std::os::unix::fs::symlink("/proc", root.join("link")).unwrap();
        let r = Rootfs::open(root).unwrap();
        assert!(r.same_fs(Path::new("/home/u")));
        assert!(!r.same_fs(Path::new("/link")));
        assert!(!r.same_fs(Path::new("/missing")));
        if nix::unistd::geteuid().is_root() {
            let mnt = root.join("mnt");
            nix::mount::mount(
                Some("tmpfs"),
                &mnt,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            let other = r.same_fs(Path::new("/mnt"));
            nix::mount::umount(&mnt).unwrap();
            assert!(!other, "a tmpfs mounted inside is another filesystem");
        }
    }

    #[test]
    fn symlink_replaces_files_inside_the_root_only() {
        let (dir, outside) = root_with_escape();
        let root = dir.path();
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("lib/libx.so.1"), b"stale").unwrap();
        let r = Rootfs::open(root).unwrap();
        r.symlink(Path::new("libx.so.2.0"), Path::new("/lib/libx.so.1"))
            .unwrap();
        let link = std::fs::read_link(root.join("lib/libx.so.1")).unwrap();
        assert_eq!(link, Path::new("libx.so.2.0"));
        r.symlink(Path::new("t"), Path::new("/escape/l")).unwrap();
        assert!(std::fs::symlink_metadata(outside.path().join("l")).is_err());
        assert!(r.symlink(Path::new("t"), Path::new("/")).is_err());
    }

    #[test]
    fn mount_points_are_made_inside_the_root_only() {
        let (dir, outside) = root_with_escape();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/kept"), b"image").unwrap();
        let r = Rootfs::open(root).unwrap();
        r.mount_point(Path::new("/escape/lib/libx.so"), false)
            .unwrap();
        r.mount_point(Path::new("/escape/dev/dri"), true).unwrap();
        // The symlink's host target is re-rooted: both land in the rootfs.
        let inside = root.join(outside.path().strip_prefix("/").unwrap());
        assert!(inside.join("lib/libx.so").is_file());
        assert!(inside.join("dev/dri").is_dir());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // An existing file is the mount point as it is.
        r.mount_point(Path::new("/etc/kept"), false).unwrap();
        assert_eq!(std::fs::read(root.join("etc/kept")).unwrap(), b"image");
    }

    #[test]
    fn resolve_works_through_a_symlinked_rootfs_path() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("lus/rootfs");
        std::fs::create_dir_all(real.join("usr/lib")).unwrap();
        std::fs::write(real.join("usr/lib/libx.so.1"), b"x").unwrap();
        std::os::unix::fs::symlink("lus", dir.path().join("scratch")).unwrap();
        let r = Rootfs::open(&dir.path().join("scratch/rootfs")).unwrap();
        assert_eq!(
            r.resolve(Path::new("/usr/lib/libx.so.1")).unwrap(),
            Path::new("/usr/lib/libx.so.1")
        );
    }

    #[test]
    fn write_creates_parents_and_never_follows_a_symlink_out() {
        let (dir, outside) = root_with_escape();
        let root = dir.path();
        let r = Rootfs::open(root).unwrap();
        r.write(Path::new("/opt/berth/bin/tool"), b"#!/bin/sh\n", 0o755)
            .unwrap();
        let md = std::fs::metadata(root.join("opt/berth/bin/tool")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(md.permissions().mode() & 0o777, 0o755);
        // `escape` points at a host directory: the write lands in the rootfs.
        r.write(Path::new("/escape/f"), b"x", 0o644).unwrap();
        assert!(!outside.path().join("f").exists());
    }

    #[test]
    fn write_replaces_an_existing_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        let ssh = root.join("usr/bin/ssh");
        std::fs::write(&ssh, vec![b'x'; 10_000]).unwrap();
        let old = std::fs::metadata(&ssh).unwrap();
        let r = Rootfs::open(root).unwrap();
        r.write(Path::new("/usr/bin/ssh"), b"#!/bin/sh\n", 0o755)
            .unwrap();
        assert_eq!(std::fs::read(&ssh).unwrap(), b"#!/bin/sh\n");
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let new = std::fs::metadata(&ssh).unwrap();
        assert_eq!(new.permissions().mode() & 0o777, 0o755);
        assert_ne!(new.ino(), old.ino(), "a new file, renamed over the old");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(root.join("usr/bin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["ssh"]);
        // A directory in the way fails and leaves no temporary file either.
        std::fs::create_dir(root.join("usr/bin/dir")).unwrap();
        assert!(r.write(Path::new("/usr/bin/dir"), b"x", 0o644).is_err());
        assert_eq!(std::fs::read_dir(root.join("usr/bin")).unwrap().count(), 2);
        // A symlink at the name is refused, and what it points at is kept.
        std::os::unix::fs::symlink("ssh", root.join("usr/bin/link")).unwrap();
        let e = r
            .write(Path::new("/usr/bin/link"), b"y", 0o644)
            .unwrap_err();
        assert!(e.to_string().contains("symbolic links"), "{e}");
        assert_eq!(std::fs::read(&ssh).unwrap(), b"#!/bin/sh\n");
        assert!(std::fs::symlink_metadata(root.join("usr/bin/link"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
