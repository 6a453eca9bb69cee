//! Applies image layers (tar streams) to a staging directory the way the OCI
//! image spec's "Applying Changesets" says, and refuses anything that could
//! write outside it: absolute or `..` paths, writes through symlinks, a
//! non-directory root, hardlinks that leave the root, device nodes when
//! rootless. Every refusal names the layer and the entry.

mod fsops;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{Archive, EntryType};

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The entry is unsafe; nothing was written for it.
    #[error("layer {layer}: unsafe entry {entry:?}: {reason}")]
    Unsafe {
        layer: String,
        entry: String,
        reason: &'static str,
    },
    /// The tar stream or a file operation failed.
    #[error("layer {layer}: entry {entry:?}: {source}")]
    Io {
        layer: String,
        entry: String,
        source: io::Error,
    },
}

/// Counters reported after unpacking.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Entries applied.
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// Applies layers, bottom first, to one staging directory.
pub struct Applier {
    root: OwnedFd,
    rootless: bool,
    /// Paths added by the layer being applied: whiteouts and opaque markers
    /// only hide lower layers, never entries of their own layer.
    added: HashSet<Vec<u8>>,
    stats: Stats,
    /// Rootless: the owner and mode each entry should have (we could not set
    /// them), handed to mksquashfs as pseudo definitions. Later layers win.
    owners: BTreeMap<Vec<u8>, (u32, u32, u32)>,
}

/// A normalised entry path: components joined by `/`, no `.`/`..`, not absolute.
fn normalize(raw: &[u8], allow_absolute: bool) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') && !allow_absolute {
        return Err("absolute path");
    }
    let mut out: Vec<u8> = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("`..` in path"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

impl Applier {
    /// An applier writing into the existing directory `staging`.
    pub fn new(staging: &Path, rootless: bool) -> io::Result<Self> {
        let root = std::fs::File::open(staging)?;
        Ok(Applier {
            root: root.into(),
            rootless,
            added: HashSet::new(),
            stats: Stats::default(),
            owners: BTreeMap::new(),
        })
    }

    /// Rootless only: writes a mksquashfs pseudo file (`-pf`) giving every
    /// entry still in the tree the owner and mode its layer recorded, so an
    /// image converted by a user keeps root-owned files root-owned. Returns
    /// false when there is nothing to write (as root, ownership is real).
    /// setuid/setgid bits stay dropped. Names with whitespace, quotes or
    /// backslashes are not written (they would need mksquashfs's quoting,
    /// which berth does not produce yet) and keep the user's ownership.
    pub fn write_pseudo_file(&self, staging: &Path, out: &Path) -> io::Result<bool> {
        if !self.rootless || self.owners.is_empty() {
            return Ok(false);
        }
        let mut text = Vec::new();
        for (path, (mode, uid, gid)) in &self.owners {
            let plain = !path
                .iter()
                .any(|b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\\' | b'\''));
            if plain && std::fs::symlink_metadata(staging.join(OsStr::from_bytes(path))).is_ok() {
                text.extend_from_slice(path);
                text.extend_from_slice(format!(" m {mode:o} {uid} {gid}\n").as_bytes());
            }
        }
        std::fs::write(out, text)?;
        Ok(true)
    }

    /// What has been applied so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Applies one uncompressed layer tar; `layer` names it in errors (its digest).
    pub fn apply<R: Read>(&mut self, layer: &str, tar: R) -> Result<(), UnpackError> {
        self.added.clear();
        let mut archive = Archive::new(tar);
        let io_err = |entry: &str, source| UnpackError::Io {
            layer: layer.into(),
            entry: entry.into(),
            source,
        };
        let entries = archive.entries().map_err(|e| io_err("", e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| io_err("", e))?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            self.apply_entry(&mut entry, &raw).map_err(|e| match e {
                EntryError::Unsafe(reason) => UnpackError::Unsafe {
                    layer: layer.into(),
                    entry: name.clone(),
                    reason,
                },
                EntryError::Io(source) => io_err(&name, source),
            })?;
            self.stats.entries += 1;
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw: &[u8],
    ) -> Result<(), EntryError> {
        let path = normalize(raw, false).map_err(EntryError::Unsafe)?;
        let kind = entry.header().entry_type();
        if path.is_empty() {
            // The root itself: a symlinked `.` or `/` would redirect every later write.
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(EntryError::Unsafe(
                    "replaces the image root with a non-directory",
                )),
            };
        }
        let (parent, name) = split_parent(&path);
        let root = self.root.as_fd();
        if name == b".wh..wh..opq" {
            let dir = open_parent(root, parent, true)?;
            let prefix = parent.to_vec();
            for child in fsops::list_dir(&reopen_readable(&dir)?)? {
                self.remove_lower(dir.as_fd(), &child, &join(&prefix, &child))?;
            }
            return Ok(());
        }
        if let Some(hidden) = name.strip_prefix(b".wh.") {
            if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.starts_with(b".wh.")
            {
                return Err(EntryError::Unsafe("malformed whiteout name"));
            }
            match open_parent(root, parent, false) {
                Ok(dir) => return self.remove_lower(dir.as_fd(), hidden, &join(parent, hidden)),
                Err(EntryError::Io(e)) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        let dir = open_parent(root, parent, true)?;
        let dir = dir.as_fd();
        let h = entry.header();
        let mode = h.mode().map_err(EntryError::Io)? & 0o7777;
        let (uid, gid) = (
            h.uid().map_err(EntryError::Io)? as u32,
            h.gid().map_err(EntryError::Io)? as u32,
        );
        let mtime = h.mtime().unwrap_or(0) as i64;
        let owner = (!self.rootless).then_some((uid, gid));
        // Rootless: no setuid/setgid we could not honour, and keep what we
        // create readable and writable so mksquashfs and cleanup can work.
        let fix = |m: u32, extra: u32| {
            if self.rootless {
                (m & 0o1777) | extra
            } else {
                m
            }
        };
        let existing = fsops::lstat_at(dir, name)?;
        match kind {
            EntryType::Directory => {
                match existing {
                    Some(st) if fsops::is_dir(&st) => {}
                    Some(_) => {
                        fsops::remove_all(dir, name)?;
                        fsops::mkdir(dir, name, 0o700)?;
                    }
                    None => fsops::mkdir(dir, name, 0o700)?,
                }
                fsops::set_meta(dir, name, owner, Some(fix(mode, 0o700)), mtime)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                fsops::remove_all(dir, name)?;
                let mut f = fsops::create_file(dir, name)?;
                self.stats.bytes += io::copy(entry, &mut f)?;
                if let Some(exts) = entry.pax_extensions().map_err(EntryError::Io)? {
                    for ext in exts {
                        let ext = ext.map_err(EntryError::Io)?;
                        if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                            if self.rootless && !key.starts_with(b"user.") {
                                continue;
                            }
                            fsops::set_xattr(&f, OsStr::from_bytes(key), ext.value_bytes())?;
                        }
                    }
                }
                drop(f);
                fsops::set_meta(dir, name, owner, Some(fix(mode, 0o600)), mtime)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or(EntryError::Unsafe("symlink without target"))?;
                fsops::remove_all(dir, name)?;
                fsops::symlink(dir, name, &target)?;
                fsops::set_meta(dir, name, owner, None, mtime)?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or(EntryError::Unsafe("hardlink without target"))?;
                let target = normalize(&raw_target, true)
                    .map_err(|_| EntryError::Unsafe("hardlink target leaves the image root"))?;
                let (tparent, tname) = split_parent(&target);
                if tname.is_empty() {
                    return Err(EntryError::Unsafe("hardlink to the image root"));
                }
                let tdir = open_parent(root, tparent, false)?;
                match fsops::lstat_at(tdir.as_fd(), tname)? {
                    None => return Err(EntryError::Unsafe("hardlink target does not exist")),
                    Some(st) if fsops::is_dir(&st) => {
                        return Err(EntryError::Unsafe("hardlink to a directory"))
                    }
                    Some(_) => {}
                }
                if target != path {
                    fsops::remove_all(dir, name)?;
                    fsops::hardlink(tdir.as_fd(), tname, dir, name)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let fmt = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                if self.rootless && fmt != libc::S_IFIFO {
                    return Err(EntryError::Unsafe("device node in a rootless unpack"));
                }
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                fsops::remove_all(dir, name)?;
                fsops::mknod(dir, name, fmt | (mode & 0o777), libc::makedev(major, minor))?;
                fsops::set_meta(dir, name, owner, Some(fix(mode, 0o600)), mtime)?;
            }
            _ => return Err(EntryError::Unsafe("unsupported tar entry type")),
        }
        if self.rootless && kind != EntryType::Link {
            let mode = if kind == EntryType::Symlink {
                0o777
            } else {
                mode & 0o1777
            };
            self.owners.insert(path.clone(), (mode, uid, gid));
        }
        self.added.insert(path);
        Ok(())
    }

    /// Removes `name` (at `path`) unless this layer added it; for a directory
    /// this layer added, removes only what lower layers put inside it.
    fn remove_lower(&self, dir: BorrowedFd, name: &[u8], path: &[u8]) -> Result<(), EntryError> {
        if !self.added.contains(path) {
            return Ok(fsops::remove_all(dir, name)?);
        }
        match fsops::lstat_at(dir, name)? {
            Some(st) if fsops::is_dir(&st) => {
                let sub = fsops::open_beneath(dir, name, libc::O_RDONLY | libc::O_DIRECTORY)?;
                for child in fsops::list_dir(&sub)? {
                    self.remove_lower(sub.as_fd(), &child, &join(path, &child))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

enum EntryError {
    Unsafe(&'static str),
    Io(io::Error),
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = parent.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Opens the parent directory of an entry; a symlink on the way is refused.
fn open_parent(root: BorrowedFd, parent: &[u8], create: bool) -> Result<OwnedFd, EntryError> {
    let r = if create {
        fsops::ensure_dir(root, parent)
    } else {
        fsops::open_beneath(root, parent, libc::O_PATH | libc::O_DIRECTORY)
    };
    r.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) => EntryError::Unsafe("writes through a symlink"),
        Some(libc::ENOTDIR) => EntryError::Unsafe("a parent of the entry is not a directory"),
        _ => EntryError::Io(e),
    })
}

/// An O_PATH directory fd cannot be listed; open it again for reading.
fn reopen_readable(dir: &OwnedFd) -> io::Result<OwnedFd> {
    fsops::open_beneath(dir.as_fd(), b"", libc::O_RDONLY | libc::O_DIRECTORY)
}
