//! Copying host paths into an image with every symlink on the way.
//!
//! Debian 12 is merged-/usr: `/lib64/ld-linux-x86-64.so.2` goes through the
//! `/lib64 -> usr/lib64` link and then a soname link into
//! `/usr/lib/x86_64-linux-gnu`. For the exact path the loader or `exec` asks
//! for to resolve inside the image, each of those links must exist there too,
//! and the real file must be stored once at its resolved location.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::layer::{Entry, Layer};
use super::ImageError;

/// Linux's limit on symlinks followed during one lookup (ELOOP beyond it).
const MAX_SYMLINK_HOPS: usize = 40;

/// One mirrored host object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostNode {
    /// A regular file: host path and permission bits.
    File(PathBuf, u32),
    /// A symlink and its target exactly as `readlink` returned it.
    Symlink(String),
}

/// A set of host files and symlinks, keyed by absolute image path (= host path
/// relative to `root`).
#[derive(Debug, Clone)]
pub struct HostTree {
    root: PathBuf,
    nodes: BTreeMap<String, HostNode>,
}

impl Default for HostTree {
    fn default() -> Self {
        Self::new()
    }
}

impl HostTree {
    /// A tree mirroring the real host root `/`.
    pub fn new() -> Self {
        Self::with_root("/")
    }

    /// A tree mirroring `root` as if it were `/` (absolute symlinks resolve
    /// against it), used by tests with a fake root.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        HostTree {
            root: root.into(),
            nodes: BTreeMap::new(),
        }
    }

    /// The mirrored objects.
    pub fn nodes(&self) -> &BTreeMap<String, HostNode> {
        &self.nodes
    }

    /// Host path of an image path.
    pub fn host_path(&self, image_path: &str) -> PathBuf {
        self.root.join(image_path.trim_start_matches('/'))
    }

    /// Adds `path` (absolute, as seen inside the image) and every symlink met
    /// while resolving it; returns the resolved path of the final regular file.
    pub fn add(&mut self, path: &str) -> Result<String, ImageError> {
        let fail = |reason: String| ImageError::Io {
            action: "cannot mirror host path",
            path: PathBuf::from(path),
            source: std::io::Error::other(reason),
        };
        // Components still to walk, in reverse so pop() yields the next one.
        let mut todo: Vec<String> = split_rev(path);
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = todo.pop() {
            match comp.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(comp);
            let image_path = format!("/{}", resolved.join("/"));
            let host = self.host_path(&image_path);
            let meta = fs::symlink_metadata(&host)
                .map_err(ImageError::io("cannot stat host path", &host))?;
            let ft = meta.file_type();
            if ft.is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(fail("too many levels of symbolic links".into()));
                }
                let target =
                    fs::read_link(&host).map_err(ImageError::io("cannot read symlink", &host))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| fail(format!("non-utf8 symlink target at {image_path}")))?;
                self.insert(&image_path, HostNode::Symlink(target.to_string()))?;
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                todo.extend(split_rev(target));
            } else if ft.is_dir() {
                if todo.is_empty() {
                    return Err(fail(format!(
                        "{image_path} is a directory, expected a file"
                    )));
                }
            } else if ft.is_file() {
                if !todo.is_empty() {
                    return Err(fail(format!(
                        "{image_path} is a file but the path continues below it"
                    )));
                }
                self.insert(
                    &image_path,
                    HostNode::File(host, meta.permissions().mode() & 0o7777),
                )?;
                return Ok(image_path);
            } else {
                return Err(fail(format!(
                    "{image_path} is neither a file, directory nor symlink"
                )));
            }
        }
        Err(fail("path resolves to the root directory".into()))
    }

    /// Adds a symlink that does not exist on the host (e.g. a busybox applet).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<(), ImageError> {
        self.insert(path, HostNode::Symlink(target.to_string()))
    }

    fn insert(&mut self, path: &str, node: HostNode) -> Result<(), ImageError> {
        match self.nodes.get(path) {
            Some(old) if *old != node => Err(ImageError::InvalidEntry {
                path: path.to_string(),
                reason: format!("added twice with different content ({old:?} vs {node:?})"),
            }),
            _ => {
                self.nodes.insert(path.to_string(), node);
                Ok(())
            }
        }
    }

    /// Host files read by this tree (for cache stamps).
    pub fn host_files(&self) -> Vec<PathBuf> {
        self.nodes
            .values()
            .filter_map(|n| match n {
                HostNode::File(p, _) => Some(p.clone()),
                HostNode::Symlink(_) => None,
            })
            .collect()
    }

    /// Layer entries for the tree: root-owned files streamed from the host
    /// with their permission bits, and symlinks verbatim.
    pub fn to_layer(&self) -> Layer {
        let mut layer = Layer::new();
        for (path, node) in &self.nodes {
            layer.push(match node {
                HostNode::File(host, mode) => Entry::host_file(path, host, *mode),
                HostNode::Symlink(target) => Entry::symlink(path, target),
            });
        }
        layer
    }
}

fn split_rev(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty())
        .rev()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake merged-/usr root with the same link shapes as Debian 12.
    fn fake_root() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu")).unwrap();
        fs::create_dir_all(r.join("usr/lib64")).unwrap();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("usr/lib64", r.join("lib64")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        fs::write(
            r.join("usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            b"ld",
        )
        .unwrap();
        symlink(
            "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            r.join("usr/lib64/ld-linux-x86-64.so.2"),
        )
        .unwrap();
        fs::write(r.join("usr/bin/tool"), b"tool").unwrap();
        symlink(
            "../../bin/./tool",
            r.join("usr/lib/x86_64-linux-gnu/tool-link"),
        )
        .unwrap();
        t
    }

    #[test]
    fn records_every_link_on_the_way() {
        let root = fake_root();
        let mut t = HostTree::with_root(root.path());
        let real = t.add("/lib64/ld-linux-x86-64.so.2").unwrap();
        assert_eq!(real, "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
        let link = |s: &str| HostNode::Symlink(s.to_string());
        assert_eq!(t.nodes()["/lib64"], link("usr/lib64"));
        assert_eq!(
            t.nodes()["/usr/lib64/ld-linux-x86-64.so.2"],
            link("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
        );
        assert_eq!(t.nodes()["/lib"], link("usr/lib"));
        assert!(matches!(t.nodes()[&real], HostNode::File(..)));
        assert_eq!(t.nodes().len(), 4);
        // Relative targets with `..` and `.` resolve against the link's directory.
        assert_eq!(
            t.add("/lib/x86_64-linux-gnu/tool-link").unwrap(),
            "/usr/bin/tool"
        );
        assert_eq!(
            t.nodes()["/usr/lib/x86_64-linux-gnu/tool-link"],
            link("../../bin/./tool")
        );
        assert_eq!(t.host_files().len(), 2);
    }

    #[test]
    fn rejects_loops_dirs_and_missing() {
        let root = fake_root();
        symlink("loop-b", root.path().join("usr/loop-a")).unwrap();
        symlink("loop-a", root.path().join("usr/loop-b")).unwrap();
        let mut t = HostTree::with_root(root.path());
        assert!(t
            .add("/usr/loop-a")
            .unwrap_err()
            .to_string()
            .contains("too many levels"));
        assert!(t
            .add("/usr/bin")
            .unwrap_err()
            .to_string()
            .contains("is a directory"));
        assert!(t.add("/usr/bin/nope").is_err());
        assert!(t
            .add("/usr/bin/tool/x")
            .unwrap_err()
            .to_string()
            .contains("path continues"));
    }
}
