//! A small in-memory reference flattener: applies layer tars the way the OCI
//! image spec ("Applying Changesets") says an unpacker must, and reports the
//! resulting tree. Tests compare what berth unpacks or mounts against it.
//!
//! Semantics per layer: whiteouts (`DIR/.wh.NAME`) and opaque markers
//! (`DIR/.wh..wh..opq`) act on lower layers only, so they are applied first;
//! then entries are added in tar order: a directory over a directory updates
//! its metadata and keeps its children, anything else replaces the old path
//! with its whole subtree. Hardlinks share the target file's content and
//! are reported as one group.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use tar::{Archive, EntryType};

use super::digest::{hex_part, HashingReader};
use super::oci::{blob_path, read_json_blob, Manifest};
use super::ImageError;

/// One path of a flattened tree (the format of `expected-tree.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Absolute path, e.g. `/data/a`.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    /// Permission bits including setuid/setgid/sticky.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// File size in bytes (files only).
    pub size: Option<u64>,
    /// Hex sha256 of the content (files only).
    pub sha256: Option<String>,
    /// Symlink target, verbatim (symlinks only).
    pub target: Option<String>,
    /// Files sharing one inode get the same group number (1, 2, ... in path
    /// order); None for files with a single link.
    pub hardlink_group: Option<u32>,
}

#[derive(Debug, Clone)]
enum Kind {
    File {
        inode: u64,
        size: u64,
        sha256: String,
    },
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// One change read from a layer before it is applied.
enum Change {
    Whiteout(Vec<String>),
    Opaque(Vec<String>),
    Add(Vec<String>, Node),
    Link(Vec<String>, Vec<String>),
}

/// The flattened state, keyed by path components (so a subtree is a contiguous range).
#[derive(Debug, Default)]
pub struct Flattener {
    nodes: BTreeMap<Vec<String>, Node>,
    next_inode: u64,
}

impl Flattener {
    /// An empty root.
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one uncompressed layer tar; `layer` numbers it for error messages.
    pub fn apply_tar<R: Read>(&mut self, layer: usize, tar: R) -> Result<(), ImageError> {
        let fail = |reason: String| ImageError::Flatten { layer, reason };
        let changes = self.read_changes(tar).map_err(|e| fail(e.to_string()))?;
        for c in &changes {
            match c {
                Change::Whiteout(p) => self.remove_subtree(p, true),
                Change::Opaque(p) => self.remove_subtree(p, false),
                _ => {}
            }
        }
        for c in changes {
            match c {
                Change::Add(p, node) => self.add(p, node).map_err(fail)?,
                Change::Link(p, target) => {
                    // A hardlink is the same inode: content and metadata both come from the target.
                    let node = match self.nodes.get(&target) {
                        Some(
                            n @ Node {
                                kind: Kind::File { .. },
                                ..
                            },
                        ) => n.clone(),
                        _ => {
                            let (p, t) = (p.join("/"), target.join("/"));
                            return Err(fail(format!(
                                "hardlink /{p} points to /{t}, which is not a file"
                            )));
                        }
                    };
                    self.add(p, node).map_err(fail)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Applies a gzip-compressed layer blob.
    pub fn apply_gzip_file(&mut self, layer: usize, blob: &Path) -> Result<(), ImageError> {
        let f =
            std::fs::File::open(blob).map_err(ImageError::io("cannot open layer blob", blob))?;
        self.apply_tar(layer, GzDecoder::new(io::BufReader::new(f)))
    }

    fn read_changes<R: Read>(&mut self, tar: R) -> io::Result<Vec<Change>> {
        let mut changes = Vec::new();
        let mut archive = Archive::new(tar);
        for entry in archive.entries()? {
            let mut entry = entry?;
            let raw = entry.path()?.to_string_lossy().into_owned();
            let mut path = split(&raw)?;
            let h = entry.header();
            let (mode, uid, gid) = (h.mode()? & 0o7777, h.uid()? as u32, h.gid()? as u32);
            let name = path.last().cloned().unwrap_or_default();
            if name == ".wh..wh..opq" {
                path.pop();
                changes.push(Change::Opaque(path));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                *path.last_mut().unwrap() = hidden.to_string();
                changes.push(Change::Whiteout(path));
                continue;
            }
            if path.is_empty() {
                continue; // the root itself: its metadata is not part of the tree
            }
            let node = |kind| Node {
                kind,
                mode,
                uid,
                gid,
            };
            match h.entry_type() {
                EntryType::Regular | EntryType::Continuous => {
                    let mut hr = HashingReader::new(&mut entry);
                    io::copy(&mut hr, &mut io::sink())?;
                    let (digest, size) = hr.finish();
                    self.next_inode += 1;
                    let kind = Kind::File {
                        inode: self.next_inode,
                        size,
                        sha256: hex_part(&digest).to_string(),
                    };
                    changes.push(Change::Add(path, node(kind)));
                }
                EntryType::Directory => changes.push(Change::Add(path, node(Kind::Dir))),
                EntryType::Symlink => {
                    let t = entry
                        .link_name()?
                        .ok_or_else(|| io::Error::other(format!("symlink {raw} has no target")))?;
                    changes.push(Change::Add(
                        path,
                        node(Kind::Symlink(t.to_string_lossy().into_owned())),
                    ));
                }
                EntryType::Link => {
                    let t = entry
                        .link_name()?
                        .ok_or_else(|| io::Error::other(format!("hardlink {raw} has no target")))?;
                    let target = split(&t.to_string_lossy())?;
                    changes.push(Change::Link(path, target));
                }
                other => {
                    return Err(io::Error::other(format!(
                        "{raw}: unsupported entry type {other:?}"
                    )))
                }
            }
        }
        Ok(changes)
    }

    /// Removes `path` and everything below it (`with_self`), or only what is below it.
    fn remove_subtree(&mut self, path: &[String], with_self: bool) {
        let below: Vec<Vec<String>> = self
            .nodes
            .range(path.to_vec()..)
            .take_while(|(k, _)| k.starts_with(path))
            .map(|(k, _)| k.clone())
            .filter(|k| with_self || k.len() > path.len())
            .collect();
        for k in below {
            self.nodes.remove(&k);
        }
    }

    fn add(&mut self, path: Vec<String>, node: Node) -> Result<(), String> {
        for n in 1..path.len() {
            match self.nodes.get(&path[..n]) {
                Some(Node {
                    kind: Kind::Dir, ..
                }) => {}
                // Unpackers create missing parents like `mkdir -p`.
                None => {
                    let dir = Node {
                        kind: Kind::Dir,
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                    };
                    self.nodes.insert(path[..n].to_vec(), dir);
                }
                Some(_) => {
                    return Err(format!(
                        "/{} has a non-directory parent /{}",
                        path.join("/"),
                        path[..n].join("/")
                    ))
                }
            }
        }
        let both_dirs = matches!(node.kind, Kind::Dir)
            && matches!(self.nodes.get(&path).map(|n| &n.kind), Some(Kind::Dir));
        if !both_dirs {
            self.remove_subtree(&path, true);
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// The flattened tree, sorted by path components.
    pub fn tree(&self) -> Vec<TreeEntry> {
        let mut links: BTreeMap<u64, Vec<&Vec<String>>> = BTreeMap::new();
        for (p, n) in &self.nodes {
            if let Kind::File { inode, .. } = n.kind {
                links.entry(inode).or_default().push(p);
            }
        }
        // Number groups by their first path so the numbering is independent of inode order.
        let mut firsts: Vec<(&Vec<String>, u64)> = links
            .iter()
            .filter(|(_, ps)| ps.len() > 1)
            .map(|(i, ps)| (ps[0], *i))
            .collect();
        firsts.sort();
        let group: BTreeMap<u64, u32> = firsts
            .iter()
            .enumerate()
            .map(|(n, (_, i))| (*i, n as u32 + 1))
            .collect();
        self.nodes
            .iter()
            .map(|(p, n)| {
                let mut e = TreeEntry {
                    path: format!("/{}", p.join("/")),
                    kind: String::new(),
                    mode: n.mode,
                    uid: n.uid,
                    gid: n.gid,
                    size: None,
                    sha256: None,
                    target: None,
                    hardlink_group: None,
                };
                match &n.kind {
                    Kind::File {
                        inode,
                        size,
                        sha256,
                    } => {
                        e.kind = "file".into();
                        e.size = Some(*size);
                        e.sha256 = Some(sha256.clone());
                        e.hardlink_group = group.get(inode).copied();
                    }
                    Kind::Dir => e.kind = "dir".into(),
                    Kind::Symlink(t) => {
                        e.kind = "symlink".into();
                        e.target = Some(t.clone());
                    }
                }
                e
            })
            .collect()
    }
}

/// Flattens the layers of the manifest `manifest_digest` in an OCI layout.
pub fn flatten_image(layout: &Path, manifest_digest: &str) -> Result<Vec<TreeEntry>, ImageError> {
    let manifest: Manifest = read_json_blob(layout, manifest_digest)?;
    let mut f = Flattener::new();
    for (i, l) in manifest.layers.iter().enumerate() {
        f.apply_gzip_file(i, &blob_path(layout, &l.digest))?;
    }
    Ok(f.tree())
}

/// Splits a tar path into components; `./` prefixes and trailing slashes are dropped.
fn split(raw: &str) -> io::Result<Vec<String>> {
    let parts: Vec<String> = raw
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(String::from)
        .collect();
    if parts.iter().any(|c| c == "..") {
        return Err(io::Error::other(format!("{raw}: `..` in a layer path")));
    }
    Ok(parts)
}

#[cfg(test)]
#[path = "flatten_tests.rs"]
mod tests;
