//! The layer model and its deterministic tar + gzip serialization.
//!
//! A [`Layer`] is a list of [`Entry`]s addressed by absolute image paths.
//! Serialization sorts entries by path components (so parents always precede
//! children), adds missing parent directories, uses a fixed mtime and explicit
//! ids, and streams: tar -> diff_id hasher -> gzip -> blob hasher -> file, so
//! even a 300 MB layer never sits in memory.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};
use tar::{Builder, EntryType};

use super::digest::{hex_part, HashingWriter};
pub use super::source::{FileSource, Generator};
use super::tarball::{append_exact, append_pax, header};
use super::{persist, ImageError};

/// What an entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    /// A regular file.
    File(FileSource),
    /// A directory.
    Dir,
    /// A symlink with this target, stored verbatim (relative or absolute).
    Symlink(String),
    /// A hardlink to the regular file at this absolute image path, which must
    /// be a [`EntryKind::File`] of the same layer.
    Hardlink(String),
    /// Deletes the path from lower layers (`DIR/.wh.NAME`).
    Whiteout,
    /// Hides all lower-layer content of this directory (`DIR/.wh..wh..opq`).
    Opaque,
}

/// One layer entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Absolute image path, e.g. `/usr/bin/env`.
    pub path: String,
    /// File, directory, link or whiteout.
    pub kind: EntryKind,
    /// Permission bits including setuid/setgid/sticky (e.g. 0o1777).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Extended attributes, written as PAX `SCHILY.xattr.*` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Entry {
    fn new(path: &str, kind: EntryKind, mode: u32) -> Self {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            xattrs: BTreeMap::new(),
        }
    }
    /// A file with in-memory content.
    pub fn file(path: &str, content: impl AsRef<[u8]>, mode: u32) -> Self {
        Self::new(
            path,
            EntryKind::File(FileSource::Bytes(content.as_ref().into())),
            mode,
        )
    }
    /// A file streamed from a host path.
    pub fn host_file(path: &str, host: impl Into<PathBuf>, mode: u32) -> Self {
        Self::new(path, EntryKind::File(FileSource::Host(host.into())), mode)
    }
    /// A file with generated content.
    pub fn generated(path: &str, gen: Arc<dyn Generator>, mode: u32) -> Self {
        Self::new(path, EntryKind::File(FileSource::Generated(gen)), mode)
    }
    /// A directory.
    pub fn dir(path: &str, mode: u32) -> Self {
        Self::new(path, EntryKind::Dir, mode)
    }
    /// A symlink (mode 0777, as symlink permissions are meaningless on Linux).
    pub fn symlink(path: &str, target: &str) -> Self {
        Self::new(path, EntryKind::Symlink(target.to_string()), 0o777)
    }
    /// A hardlink to another file of the same layer.
    pub fn hardlink(path: &str, target: &str) -> Self {
        Self::new(path, EntryKind::Hardlink(target.to_string()), 0o644)
    }
    /// A whiteout deleting `path` from lower layers.
    pub fn whiteout(path: &str) -> Self {
        Self::new(path, EntryKind::Whiteout, 0o644)
    }
    /// An opaque marker hiding lower-layer content of directory `path`.
    pub fn opaque(path: &str) -> Self {
        Self::new(path, EntryKind::Opaque, 0o644)
    }
    /// Sets the owner.
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        (self.uid, self.gid) = (uid, gid);
        self
    }
    /// Adds an extended attribute.
    pub fn xattr(mut self, name: &str, value: &[u8]) -> Self {
        self.xattrs.insert(name.to_string(), value.to_vec());
        self
    }
}

/// Result of writing a layer blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    /// `sha256:` digest of the gzip blob.
    pub digest: String,
    /// Size of the gzip blob in bytes.
    pub size: u64,
    /// `sha256:` digest of the uncompressed tar (goes into `rootfs.diff_ids`).
    pub diff_id: String,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
}

/// A layer: entries plus the gzip level used to compress it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The entries, in any order (serialization sorts them).
    pub entries: Vec<Entry>,
    /// Gzip level 0-9; the large image uses 1 because speed matters more than size there.
    pub gzip_level: u32,
}

impl Default for Layer {
    fn default() -> Self {
        Layer {
            entries: Vec::new(),
            gzip_level: 6,
        }
    }
}

/// Splits an absolute image path into its components, rejecting `.`/`..`/empty ones.
pub fn components(path: &str) -> Result<Vec<&str>, ImageError> {
    let bad = |reason: &str| ImageError::InvalidEntry {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let rel = path
        .strip_prefix('/')
        .ok_or_else(|| bad("image paths must be absolute"))?;
    let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        return Err(bad("the image root itself cannot be an entry"));
    }
    if parts.iter().any(|c| *c == "." || *c == "..") {
        return Err(bad("`.` and `..` are not allowed in image paths"));
    }
    Ok(parts)
}

/// One tar record to write: its name components and the entry (None = implied parent dir).
struct Planned<'a> {
    name: Vec<Cow<'a, str>>,
    entry: Option<&'a Entry>,
}

impl Layer {
    /// An empty layer with the default gzip level.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry (builder style).
    pub fn with(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    /// Adds an entry.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Validates the entries and returns the tar records in serialization order:
    /// sorted by path components, hardlinks last so their targets already exist
    /// when an extractor reaches them.
    fn plan(&self) -> Result<Vec<Planned<'_>>, ImageError> {
        let mut by_name: BTreeMap<Vec<Cow<str>>, &Entry> = BTreeMap::new();
        for e in &self.entries {
            let mut name: Vec<Cow<str>> = components(&e.path)?
                .into_iter()
                .map(Cow::Borrowed)
                .collect();
            let last = name.last().expect("components is never empty").clone();
            if last.starts_with(".wh.") {
                return Err(invalid(
                    e,
                    "names starting with .wh. are reserved; use Entry::whiteout/opaque",
                ));
            }
            match e.kind {
                EntryKind::Whiteout => {
                    *name.last_mut().unwrap() = Cow::Owned(format!(".wh.{last}"))
                }
                EntryKind::Opaque => name.push(Cow::Borrowed(".wh..wh..opq")),
                _ => {}
            }
            if by_name.insert(name, e).is_some() {
                return Err(invalid(e, "the same path appears twice in one layer"));
            }
        }
        let mut implied: BTreeSet<Vec<Cow<str>>> = BTreeSet::new();
        for (name, e) in &by_name {
            for n in 1..name.len() {
                let parent = &name[..n];
                match by_name.get(parent) {
                    Some(p) if !matches!(p.kind, EntryKind::Dir) => {
                        return Err(invalid(
                            e,
                            &format!("its parent {} is not a directory in this layer", p.path),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        implied.insert(parent.to_vec());
                    }
                }
            }
            if let EntryKind::Hardlink(target) = &e.kind {
                let t: Vec<Cow<str>> = components(target)?.into_iter().map(Cow::Borrowed).collect();
                if !matches!(by_name.get(&t).map(|t| &t.kind), Some(EntryKind::File(_))) {
                    return Err(invalid(
                        e,
                        "hardlink target must be a regular file of the same layer",
                    ));
                }
            }
        }
        let mut plan: Vec<Planned> = implied
            .into_iter()
            .map(|name| Planned { name, entry: None })
            .collect();
        plan.extend(by_name.into_iter().map(|(name, e)| Planned {
            name,
            entry: Some(e),
        }));
        plan.sort_by(|a, b| {
            let hl = |p: &Planned| matches!(p.entry.map(|e| &e.kind), Some(EntryKind::Hardlink(_)));
            (hl(a), &a.name).cmp(&(hl(b), &b.name))
        });
        Ok(plan)
    }

    /// Writes the uncompressed layer tar to `w` and returns `w`.
    pub fn write_tar<W: Write>(&self, w: W) -> Result<W, ImageError> {
        let plan = self.plan()?;
        let mut b = Builder::new(w);
        for p in &plan {
            let name = p.name.join("/");
            write_entry(&mut b, &name, p.entry)?;
        }
        b.into_inner()
            .map_err(ImageError::io("cannot finish layer tar", "<layer>"))
    }

    /// Writes the gzip-compressed layer into `blobs_dir` (a layout's `blobs/sha256`),
    /// named by its digest, in one streaming pass.
    pub fn write_blob(&self, blobs_dir: &Path) -> Result<LayerBlob, ImageError> {
        let tmp = tempfile::NamedTempFile::new_in(blobs_dir)
            .map_err(ImageError::io("cannot create temp blob in", blobs_dir))?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(ImageError::io("cannot reopen", tmp.path()))?;
        let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
        // GzEncoder's header has mtime 0 and no file name: nothing host-specific.
        let gz = GzEncoder::new(compressed, Compression::new(self.gzip_level.min(9)));
        let plain = self.write_tar(HashingWriter::new(gz))?;
        let (gz, diff_id, uncompressed_size) = plain.finish();
        let compressed = gz
            .finish()
            .map_err(ImageError::io("cannot finish gzip of", tmp.path()))?;
        let (mut buf, digest, size) = compressed.finish();
        buf.flush()
            .map_err(ImageError::io("cannot write", tmp.path()))?;
        let dest = blobs_dir.join(hex_part(&digest));
        persist(tmp, &dest)?;
        Ok(LayerBlob {
            digest,
            size,
            diff_id,
            uncompressed_size,
        })
    }
}

fn write_entry<W: Write>(
    b: &mut Builder<W>,
    name: &str,
    entry: Option<&Entry>,
) -> Result<(), ImageError> {
    let io_err = ImageError::io("cannot write layer entry", name);
    let Some(e) = entry else {
        // Implied parent: plain root-owned 0755 directory.
        let mut h = header(EntryType::Directory, 0o755, 0, 0, 0);
        return b.append_data(&mut h, name, io::empty()).map_err(io_err);
    };
    write_entry_io(b, name, e).map_err(io_err)
}

fn write_entry_io<W: Write>(b: &mut Builder<W>, name: &str, e: &Entry) -> io::Result<()> {
    if !e.xattrs.is_empty() {
        let records: Vec<(String, Vec<u8>)> = e
            .xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
            .collect();
        append_pax(b, &records)?;
    }
    let (uid, gid, mode) = (e.uid as u64, e.gid as u64, e.mode & 0o7777);
    match &e.kind {
        EntryKind::File(src) => {
            let (size, reader) = src.open().map_err(io::Error::other)?;
            let mut h = header(EntryType::Regular, mode, uid, gid, size);
            append_exact(b, &mut h, name, size, reader)?;
        }
        EntryKind::Dir => b.append_data(
            &mut header(EntryType::Directory, mode, uid, gid, 0),
            name,
            io::empty(),
        )?,
        EntryKind::Symlink(t) => {
            b.append_link(&mut header(EntryType::Symlink, mode, uid, gid, 0), name, t)?
        }
        EntryKind::Hardlink(t) => {
            let target = components(t).map_err(io::Error::other)?.join("/");
            b.append_link(
                &mut header(EntryType::Link, mode, uid, gid, 0),
                name,
                target,
            )?
        }
        EntryKind::Whiteout | EntryKind::Opaque => b.append_data(
            &mut header(EntryType::Regular, mode, uid, gid, 0),
            name,
            io::empty(),
        )?,
    }
    Ok(())
}

fn invalid(e: &Entry, reason: &str) -> ImageError {
    ImageError::InvalidEntry {
        path: e.path.clone(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
#[path = "layer_tests.rs"]
mod tests;
