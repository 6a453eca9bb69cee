//! The conversion shared by pull and load: apply layer files in order into a
//! staging directory inside the store's work area, run mksquashfs, publish.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::digest::{Digest, HashingReader};
use super::progress::Progress;
use super::unpack::Applier;
use super::{io_cause, squash, Cause};
use crate::site::SiteConfig;
use crate::store::{ImageMeta, Store, WorkDir};

/// How a layer file is checked while it is applied.
#[derive(Debug, Clone)]
pub enum Verify {
    /// Already verified (downloaded through a hashing reader).
    Done,
    /// The file as stored must hash to this (OCI layout blobs).
    Blob(Digest),
    /// The uncompressed tar must hash to this (Docker archives: diff ids).
    DiffId(Digest),
}

/// One layer ready to apply.
#[derive(Debug, Clone)]
pub struct LayerFile {
    /// Its digest, for messages.
    pub digest: Digest,
    /// Where it is (compressed or not).
    pub path: PathBuf,
    /// What to check.
    pub verify: Verify,
    /// Delete the file once applied (downloaded blobs).
    pub remove_after: bool,
}

/// Wraps a layer stream in the decompressor its magic bytes call for
/// (gzip, zstd, or none), whatever the media type claims.
pub fn decompress<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::Decoder::with_buffer(br)?)
    } else {
        Box::new(br)
    })
}

/// Applies, squashes and publishes images.
pub struct Converter<'a> {
    /// Destination store.
    pub store: &'a Store,
    /// Site settings (squashfs options).
    pub site: &'a SiteConfig,
    /// Progress output.
    pub progress: &'a Progress,
    /// Unpacking without root privileges.
    pub rootless: bool,
    /// Total compressed size of the layers, to decide where to unpack.
    pub compressed_bytes: u64,
}

/// Where layers are unpacked in RAM: one directory per user under /dev/shm.
pub fn ram_staging_root() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    PathBuf::from(format!("/dev/shm/berth-staging-{}", unsafe {
        libc::geteuid()
    }))
}

/// The RAM staging root when it is safe to use: a real directory (not a
/// symlink) that we own with mode 0700. /dev/shm is writable by everyone, so
/// another user could have made this name first to steer root's unpack; then
/// RAM staging is simply off. The sticky bit on /dev/shm keeps others from
/// replacing our directory once it is ours.
/// With `create`, a missing one is made first; without, a missing one is
/// `None` (cleaning up needs no directory that was never used).
pub fn trusted_ram_staging_root(create: bool) -> Option<PathBuf> {
    let root = ram_staging_root();
    trusted_private_dir(&root, create).then_some(root)
}

/// Creates `dir` with mode 0700 if missing (when `create`), then checks it is
/// a real directory (not a symlink), owned by us, with mode exactly 0700.
fn trusted_private_dir(dir: &Path, create: bool) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return false,
        }
    }
    let Ok(md) = std::fs::symlink_metadata(dir) else {
        return false;
    };
    let ours = md.file_type().is_dir()
        && md.uid() == nix::unistd::geteuid().as_raw()
        && md.mode() & 0o7777 == 0o700;
    if !ours {
        tracing::warn!(dir = %dir.display(), "RAM staging directory is not ours with mode 0700: unpacking in the store instead");
    }
    ours
}

/// A RAM work directory for unpacking when the site allows it and /dev/shm is a
/// tmpfs with room for the unpacked image (estimated at five times the
/// compressed layers, plus 256 MiB to spare). Unpacking to RAM means the store
/// only ever receives the finished squashfs: on a disk-bound node the unpacked
/// tree's writes and reads were most of the import time.
fn ram_staging(site: &SiteConfig, compressed_bytes: u64) -> Option<WorkDir> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    if !site.store.ram_staging {
        return None;
    }
    let shm = Path::new("/dev/shm");
    let fs = nix::sys::statfs::statfs(shm).ok()?;
    if fs.filesystem_type().0 as i64 != TMPFS_MAGIC {
        return None;
    }
    let free = fs.blocks_available() as u64 * fs.block_size() as u64;
    // Sizes come from the registry: saturate, never wrap.
    if free < compressed_bytes.saturating_mul(5).saturating_add(256 << 20) {
        return None;
    }
    WorkDir::create(&trusted_ram_staging_root(true)?).ok()
}

fn mismatch(what: &str, l: &LayerFile, expected: &Digest, actual: &Digest) -> Cause {
    Cause::Invalid(format!(
        "layer {}: {what} {expected} does not match its content ({actual}): the archive is damaged",
        l.digest
    ))
}

impl Converter<'_> {
    /// Applies `layers` (bottom first, as they become ready), squashes the
    /// result and publishes it as `meta.id`; returns the published metadata.
    /// The caller holds the image lock.
    pub fn convert(
        &self,
        work: &WorkDir,
        layers: impl Iterator<Item = Result<LayerFile, Cause>>,
        mut meta: ImageMeta,
    ) -> Result<ImageMeta, Cause> {
        // The squashfs is written in the store's work directory (same filesystem,
        // so publishing is a rename); the unpacked tree goes to RAM when possible.
        let ram = ram_staging(self.site, self.compressed_bytes);
        tracing::debug!(ram = ram.is_some(), "staging");
        let staging = ram.as_ref().unwrap_or(work).path().join("rootfs");
        std::fs::create_dir(&staging).map_err(io_cause("cannot create", &staging))?;
        let mut applier =
            Applier::new(&staging, self.rootless).map_err(io_cause("cannot open", &staging))?;
        for layer in layers {
            let l = layer?;
            self.progress.stage("unpack", &l.digest.to_string());
            let f = File::open(&l.path).map_err(io_cause("cannot open layer", &l.path))?;
            let mut raw = HashingReader::new(f);
            {
                let mut tar = HashingReader::new(
                    decompress(&mut raw).map_err(io_cause("cannot read layer", &l.path))?,
                );
                applier.apply(&l.digest.to_string(), &mut tar)?;
                // Hash what the tar reader left unread (end-of-archive padding).
                io::copy(&mut tar, &mut io::sink())
                    .map_err(io_cause("cannot read layer", &l.path))?;
                if let Verify::DiffId(d) = &l.verify {
                    let (actual, _) = tar.finish();
                    if &actual != d {
                        return Err(mismatch("diff id", &l, d, &actual));
                    }
                }
            }
            if let Verify::Blob(d) = &l.verify {
                io::copy(&mut raw, &mut io::sink())
                    .map_err(io_cause("cannot read layer", &l.path))?;
                let (actual, _) = raw.finish();
                if &actual != d {
                    return Err(mismatch("digest", &l, d, &actual));
                }
            }
            if l.remove_after {
                let _ = std::fs::remove_file(&l.path);
            }
        }
        let stats = applier.stats();
        self.progress.stage(
            "squash",
            &format!("{} entries, {} bytes", stats.entries, stats.bytes),
        );
        let out = work.path().join("image.sqsh");
        let pseudo = work.path().join("ownership.pseudo");
        let pseudo = applier
            .write_pseudo_file(&staging, &pseudo)
            .map_err(io_cause("cannot write", &pseudo))?
            .then_some(pseudo.as_path());
        squash::mksquashfs(&staging, &out, &self.site.squashfs, pseudo).map_err(Cause::Squash)?;
        meta.size = std::fs::metadata(&out)
            .map_err(io_cause("cannot stat", &out))?
            .len();
        meta.created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.store.publish(&out, &meta)?;
        tracing::info!(id = %meta.id, size = meta.size, entries = stats.entries, "image converted");
        Ok(meta)
    }
}

#[cfg(test)]
mod staging_tests {
    use super::trusted_private_dir;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_our_own_private_directory_is_trusted() {
        let t = tempfile::tempdir().unwrap();
        let fresh = t.path().join("fresh");
        let missing = t.path().join("missing");
        assert!(
            !trusted_private_dir(&missing, false),
            "not created without `create`"
        );
        assert!(!missing.exists());
        assert!(trusted_private_dir(&fresh, true), "created 0700 and ours");
        assert!(
            trusted_private_dir(&fresh, false),
            "found again without creating"
        );

        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            !trusted_private_dir(&open, true),
            "a directory others can write is refused"
        );

        let link = t.path().join("link");
        std::os::unix::fs::symlink(&fresh, &link).unwrap();
        assert!(!trusted_private_dir(&link, true), "a symlink is refused");

        if nix::unistd::geteuid().is_root() {
            let theirs = t.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::os::unix::fs::chown(&theirs, Some(4242), Some(4242)).unwrap();
            assert!(
                !trusted_private_dir(&theirs, true),
                "another user's directory is refused"
            );
        }
    }
}
