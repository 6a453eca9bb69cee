//! The image store: one squashfs file per image, keyed by the image's config
//! digest so an image is converted once however it arrived (pull or load).
//!
//! ```text
//! <store>/images/<hex>.sqsh   the image (published by rename)
//! <store>/images/<hex>.json   its metadata; written last, so it is what makes an image visible
//! <store>/refs/<name>.json    reference -> image id
//! <store>/tmp/<work>/         in-progress conversions, each owned by tmp/<work>.lock
//! <store>/locks/<hex>.lock    per-image conversion lock
//! ```

pub mod gc;
pub mod lock;
mod work;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use work::WorkDir;

use crate::image::digest::Digest;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("image store {}: {what}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Another process kept the image lock for too long.
    #[error("timed out after {secs} s waiting for another berth converting this image (lock {}): if none is running, check that the store's filesystem supports flock (docs/store.md)", path.display())]
    LockTimeout { secs: u64, path: PathBuf },
    /// Metadata is unreadable.
    #[error("image store {}: corrupt metadata: {reason}: remove the file or run `berth gc`", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What the store knows about one image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Image id: the digest of its config blob.
    pub id: Digest,
    /// Manifest digest it was pulled or loaded with, when known.
    pub manifest: Option<Digest>,
    /// Size of the squashfs file in bytes.
    pub size: u64,
    /// When it was converted (seconds since the epoch).
    pub created: u64,
    /// `os/architecture`.
    pub platform: String,
    /// The image configuration (`config` object of the config blob).
    pub config: serde_json::Value,
}

/// A reference record in `refs/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefRecord {
    /// The canonical reference.
    pub reference: String,
    /// The image it points at.
    pub id: Digest,
}

/// One store directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Encodes a reference as a file name (`/`, `:` and `@` are escaped).
fn ref_file_name(reference: &str) -> String {
    let mut s = String::new();
    for c in reference.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
            s.push(c);
        } else {
            s.push_str(&format!("%{:02X}", c as u32));
        }
    }
    s + ".json"
}

/// The suffix of [`write_atomic`]'s temporary files (`gc` collects old ones).
const TMP_SUFFIX: &str = ".berth-tmp";

/// Writes `data` to `path` through a temporary name, fsync and rename.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}{TMP_SUFFIX}", std::process::id()));
    let tmp = path.with_file_name(name);
    let mut f = fs::File::create(&tmp).map_err(io_err("cannot write", &tmp))?;
    f.write_all(data)
        .and_then(|_| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|_| f.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))?;
    sync_dir(path.parent().unwrap_or(Path::new("/")));
    Ok(())
}

/// fsync a directory so a rename in it survives a crash (best effort).
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`; `shared` stores are
    /// world-readable so every user on every node can mount their images.
    pub fn open(root: &Path, shared: bool) -> Result<Self, StoreError> {
        let mode = if shared { 0o755 } else { 0o700 };
        if !root.exists() {
            fs::create_dir_all(root).map_err(io_err("cannot create", root))?;
            fs::set_permissions(root, fs::Permissions::from_mode(mode))
                .map_err(io_err("cannot chmod", root))?;
        }
        for sub in ["images", "refs", "tmp", "locks"] {
            let p = root.join(sub);
            match fs::create_dir(&p) {
                Ok(()) => fs::set_permissions(&p, fs::Permissions::from_mode(mode))
                    .map_err(io_err("cannot chmod", &p))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("cannot create", &p)(e)),
            }
        }
        Ok(Store {
            root: root.to_path_buf(),
        })
    }

    /// A store that must already exist (for read-only lookups).
    pub fn existing(root: &Path) -> Option<Self> {
        root.join("images").is_dir().then(|| Store {
            root: root.to_path_buf(),
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The squashfs file of image `id`.
    pub fn image_file(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.sqsh", id.hex()))
    }

    fn meta_file(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    /// The published image `id`, if any.
    pub fn get(&self, id: &Digest) -> Result<Option<ImageMeta>, StoreError> {
        let p = self.meta_file(id);
        let bytes = match fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("cannot read", &p)(e)),
        };
        let meta: ImageMeta = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        Ok(self.image_file(id).is_file().then_some(meta))
    }

    /// Every published image. An image whose metadata is corrupt is left out
    /// with a warning (`berth gc` removes it), so one bad file never hides
    /// the rest of the store.
    pub fn list(&self) -> Result<Vec<ImageMeta>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let name = e.map_err(io_err("cannot list", &dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(hex) = name.strip_suffix(".json") {
                if let Ok(id) = Digest::parse(&format!("sha256:{hex}")) {
                    match self.get(&id) {
                        Ok(Some(m)) => out.push(m),
                        Ok(None) => {}
                        Err(e @ StoreError::Corrupt { .. }) => crate::log::warn(&e.to_string()),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Every reference record.
    pub fn refs(&self) -> Result<Vec<RefRecord>, StoreError> {
        let dir = self.root.join("refs");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(io_err("cannot list", &dir))? {
            let p = e.map_err(io_err("cannot list", &dir))?.path();
            if p.extension().is_some_and(|x| x == "json") {
                if let Ok(r) = fs::read(&p).map(|b| serde_json::from_slice::<RefRecord>(&b)) {
                    out.extend(r.ok());
                }
            }
        }
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// The image a canonical reference points at, without any network.
    pub fn lookup(&self, reference: &str) -> Result<Option<ImageMeta>, StoreError> {
        let p = self.root.join("refs").join(ref_file_name(reference));
        match fs::read(&p) {
            Ok(b) => match serde_json::from_slice::<RefRecord>(&b) {
                Ok(r) => self.get(&r.id),
                Err(e) => Err(StoreError::Corrupt {
                    path: p,
                    reason: e.to_string(),
                }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &p)(e)),
        }
    }

    /// The image whose manifest digest is `digest` (references pinned by digest).
    pub fn find_manifest(&self, digest: &Digest) -> Result<Option<ImageMeta>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|m| m.manifest.as_ref() == Some(digest) || &m.id == digest))
    }

    /// Points `reference` at image `id`.
    pub fn tag(&self, reference: &str, id: &Digest) -> Result<(), StoreError> {
        let rec = RefRecord {
            reference: reference.into(),
            id: id.clone(),
        };
        let p = self.root.join("refs").join(ref_file_name(reference));
        write_atomic(
            &p,
            &serde_json::to_vec_pretty(&rec).expect("ref serializes"),
            0o644,
        )
    }

    /// Removes the reference record; true when it existed.
    pub fn untag(&self, reference: &str) -> Result<bool, StoreError> {
        let p = self.root.join("refs").join(ref_file_name(reference));
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot remove", &p)(e)),
        }
    }

    /// Takes the per-image lock, waiting at most `timeout`.
    pub fn lock_image(&self, id: &Digest, timeout: Duration) -> Result<lock::Lock, StoreError> {
        let p = self.root.join("locks").join(format!("{}.lock", id.hex()));
        lock::lock(&p, timeout)
            .map_err(io_err("cannot lock", &p))?
            .ok_or(StoreError::LockTimeout {
                secs: timeout.as_secs(),
                path: p,
            })
    }

    /// A fresh private work directory under `tmp/`, owned while the value lives.
    pub fn work_dir(&self) -> Result<WorkDir, StoreError> {
        WorkDir::create(&self.root.join("tmp"))
    }

    /// Publishes a converted image: the squashfs first, then the metadata
    /// that makes it visible. The caller holds the image lock.
    pub fn publish(&self, sqsh: &Path, meta: &ImageMeta) -> Result<(), StoreError> {
        let dest = self.image_file(&meta.id);
        let f = fs::File::open(sqsh).map_err(io_err("cannot open", sqsh))?;
        f.set_permissions(fs::Permissions::from_mode(0o644))
            .and_then(|_| f.sync_all())
            .map_err(io_err("cannot sync", sqsh))?;
        fs::rename(sqsh, &dest).map_err(io_err("cannot publish", &dest))?;
        write_atomic(
            &self.meta_file(&meta.id),
            &serde_json::to_vec_pretty(meta).expect("meta serializes"),
            0o644,
        )
    }

    /// Deletes image `id` (metadata first, so it disappears atomically) and
    /// every reference to it. The caller holds the image lock.
    pub fn delete_image(&self, id: &Digest) -> Result<(), StoreError> {
        for r in self.refs()? {
            if &r.id == id {
                self.untag(&r.reference)?;
            }
        }
        for p in [self.meta_file(id), self.image_file(id)] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("cannot remove", &p)(e)),
            }
        }
        sync_dir(&self.root.join("images"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_file_names_are_flat_and_distinct() {
        assert_eq!(ref_file_name("a.io/b/c:d"), "a.io%2Fb%2Fc%3Ad.json");
        assert_ne!(ref_file_name("a/b:c"), ref_file_name("a/b%3Ac"));
    }
}
