//! Build caching and atomic publication of image directories.
//!
//! An image directory is reused only when its `stamp` file matches: the
//! builder version plus the paths, sizes and mtimes of the host files it was
//! built from. New builds happen in a hidden temp directory next to the final
//! one and are renamed into place with the stamp written last, so an
//! interrupted build never leaves a directory that looks complete. A flock on
//! the parent serializes concurrent builders (parallel tests, two processes).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

use super::oci::BuiltImage;
use super::{ImageError, BUILDER_VERSION};

const STAMP: &str = "stamp";
const BUILT: &str = "built.json";

/// The stamp for an image: sha256 over the builder version, `extra` (anything
/// else the content depends on) and each host input's path, size and mtime.
pub fn stamp(extra: &str, host_inputs: &[PathBuf]) -> Result<String, ImageError> {
    let mut h = Sha256::new();
    h.update(format!(
        "berth-tests image builder v{BUILDER_VERSION}\n{extra}\n"
    ));
    let mut inputs = host_inputs.to_vec();
    inputs.sort();
    for p in inputs {
        let m = fs::metadata(&p).map_err(ImageError::io("cannot stat build input", &p))?;
        h.update(format!(
            "{} {} {}.{}\n",
            p.display(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ));
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of the builder's own source, so editing how an image is made
/// invalidates caches without anyone remembering to bump [`BUILDER_VERSION`].
pub fn source_fingerprint() -> String {
    const SOURCES: &[&str] = &[
        include_str!("archive.rs"),
        include_str!("busybox.rs"),
        include_str!("catalog.rs"),
        include_str!("elf.rs"),
        include_str!("flatten.rs"),
        include_str!("hostfs.rs"),
        include_str!("large.rs"),
        include_str!("layer.rs"),
        include_str!("layered.rs"),
        include_str!("manifest.rs"),
        include_str!("mpi.rs"),
        include_str!("oci.rs"),
        include_str!("source.rs"),
        include_str!("tarball.rs"),
    ];
    let mut h = Sha256::new();
    for s in SOURCES {
        h.update(s.as_bytes());
    }
    hex::encode(h.finalize())
}

/// An exclusive lock on `dir/.lock`, held until dropped.
pub struct DirLock(#[allow(dead_code)] Flock<File>);

impl DirLock {
    /// Creates `dir` if needed and blocks until the lock is ours.
    pub fn acquire(dir: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(dir).map_err(ImageError::io("cannot create", dir))?;
        let path = dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(ImageError::io("cannot open", &path))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, errno)| {
            ImageError::io("cannot lock", &path)(std::io::Error::from(errno))
        })?;
        Ok(DirLock(lock))
    }
}

/// The image in `dir` if its stamp matches and all its outputs exist.
pub fn cached(dir: &Path, stamp: &str) -> Option<BuiltImage> {
    if fs::read_to_string(dir.join(STAMP)).ok()?.trim() != stamp {
        return None;
    }
    let mut built: BuiltImage = serde_json::from_slice(&fs::read(dir.join(BUILT)).ok()?).ok()?;
    built.relocate(dir);
    let complete = built.layout_dir.join("index.json").is_file()
        && built.docker_archive.is_file()
        && built.oci_archive.is_file();
    complete.then_some(built)
}

/// Returns the cached image in `dir`, or runs `build` on a fresh temp
/// directory and atomically replaces `dir` with it. The caller must hold a
/// [`DirLock`] on `dir`'s parent.
pub fn build_or_reuse(
    dir: &Path,
    stamp: &str,
    build: impl FnOnce(&Path) -> Result<BuiltImage, ImageError>,
) -> Result<BuiltImage, ImageError> {
    if let Some(built) = cached(dir, stamp) {
        tracing::debug!(dir = %dir.display(), "reusing cached test image");
        // Mark it recently used, for [`prune`].
        if let Ok(f) = OpenOptions::new().append(true).open(dir.join(STAMP)) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        return Ok(built);
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_leftovers(parent, &name);
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    fs::create_dir_all(&tmp).map_err(ImageError::io("cannot create", &tmp))?;
    let result = build(&tmp).and_then(|built| finish(&tmp, stamp, built));
    let mut built = match result {
        Ok(b) => b,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if fs::symlink_metadata(dir).is_ok() {
        fs::rename(dir, &old).map_err(ImageError::io("cannot move aside", dir))?;
    }
    fs::rename(&tmp, dir).map_err(ImageError::io("cannot rename finished image to", dir))?;
    let _ = fs::remove_dir_all(&old).or_else(|_| fs::remove_file(&old));
    built.relocate(dir);
    Ok(built)
}

/// Writes `built.json`, then the stamp (last: it is what marks the directory complete).
fn finish(tmp: &Path, stamp: &str, mut built: BuiltImage) -> Result<BuiltImage, ImageError> {
    // Readable by the unprivileged users later tests run as.
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o755))
        .map_err(ImageError::io("cannot chmod", tmp))?;
    built.relocate(tmp);
    let json = serde_json::to_vec_pretty(&built).map_err(ImageError::json("built.json"))?;
    fs::write(tmp.join(BUILT), json).map_err(ImageError::io("cannot write", tmp.join(BUILT)))?;
    fs::write(tmp.join(STAMP), stamp).map_err(ImageError::io("cannot write", tmp.join(STAMP)))?;
    Ok(built)
}

/// `cache_dir/<name>-<first 16 hex digits of stamp>`.
pub fn keyed_dir(cache_dir: &Path, name: &str, stamp: &str) -> PathBuf {
    cache_dir.join(format!("{name}-{}", &stamp[..16.min(stamp.len())]))
}

/// Removes all but the `keep` most recently used `cache_dir/<name>-*`
/// versions (by their stamp file's mtime), with their lock directories.
/// Errors are ignored: pruning is housekeeping, and a version another
/// process is using right now is among the most recent anyway.
pub fn prune(cache_dir: &Path, name: &str, keep: usize) {
    let Ok(rd) = fs::read_dir(cache_dir) else {
        return;
    };
    let prefix = format!("{name}-");
    let mut versions: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| {
            let used = fs::metadata(e.path().join(STAMP)).and_then(|m| m.modified());
            (used.unwrap_or(std::time::UNIX_EPOCH), e.path())
        })
        .collect();
    versions.sort_by(|a, b| b.cmp(a));
    for (_, dir) in versions.into_iter().skip(keep) {
        let lock = cache_dir.join(format!(
            ".{}.lock.d",
            dir.file_name().unwrap_or_default().to_string_lossy()
        ));
        let _ = fs::remove_dir_all(&dir);
        let _ = fs::remove_dir_all(lock);
    }
}

/// Temp and old directories of interrupted builds (any pid: we hold the lock).
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(rd) = fs::read_dir(parent) else { return };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&format!(".{name}.tmp-")) || n.starts_with(&format!(".{name}.old-")) {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::{Entry, Layer};
    use crate::image::oci::{build_image, ImageSpec};

    fn spec(content: &str) -> ImageSpec {
        let mut s = ImageSpec::new("cache", "v1");
        s.layers
            .push(Layer::new().with(Entry::file("/f", content, 0o644)));
        s
    }

    #[test]
    fn stamp_tracks_inputs_and_failed_builds_leave_nothing() {
        let t = tempfile::tempdir().unwrap();
        let input = t.path().join("input");
        fs::write(&input, "1").unwrap();
        let s1 = stamp("x", std::slice::from_ref(&input)).unwrap();
        assert_eq!(s1, stamp("x", std::slice::from_ref(&input)).unwrap());
        assert_ne!(s1, stamp("y", std::slice::from_ref(&input)).unwrap());
        fs::write(&input, "22").unwrap();
        assert_ne!(s1, stamp("x", std::slice::from_ref(&input)).unwrap());

        let _lock = DirLock::acquire(t.path()).unwrap();
        let dir = t.path().join("img");
        let a = build_or_reuse(&dir, &s1, |d| build_image(&spec("a"), d)).unwrap();
        assert_eq!(a.layout_dir, dir.join("layout"));
        // Same stamp: reused without calling the builder.
        let b = build_or_reuse(&dir, &s1, |_| panic!("should be cached")).unwrap();
        assert_eq!(a, b);
        // A failing rebuild leaves the old image in place and no temp dir.
        let err = build_or_reuse(&dir, "other", |_| Err(ImageError::Registry("boom".into())));
        assert!(err.is_err());
        assert_eq!(cached(&dir, &s1), Some(a.clone()));
        let names: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
        // A new stamp rebuilds and replaces.
        let c = build_or_reuse(&dir, "other", |d| build_image(&spec("c"), d)).unwrap();
        assert_ne!(c.manifest_digest, a.manifest_digest);
        assert!(cached(&dir, &s1).is_none());
    }

    #[test]
    fn prune_keeps_the_most_recently_used_versions() {
        let t = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for (i, v) in ["big-a", "big-b", "big-c"].iter().enumerate() {
            let d = t.path().join(v);
            fs::create_dir_all(&d).unwrap();
            fs::create_dir_all(t.path().join(format!(".{v}.lock.d"))).unwrap();
            let f = File::create(d.join(STAMP)).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(100 * (3 - i as u64)))
                .unwrap();
        }
        fs::create_dir_all(t.path().join("other-x")).unwrap();
        prune(t.path(), "big", 2);
        let mut left: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".big-b.lock.d",
                ".big-c.lock.d",
                "big-b",
                "big-c",
                "other-x"
            ]
        );
        assert_eq!(
            keyed_dir(t.path(), "big", "0123456789abcdef0123"),
            t.path().join("big-0123456789abcdef")
        );
    }
}
