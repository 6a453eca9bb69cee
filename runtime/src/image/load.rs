//! `berth load`: `docker save` archives and OCI image layouts (a directory or
//! a tar of one), converted exactly like a pull.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::convert::{Converter, LayerFile, Verify};
use super::digest::Digest;
use super::manifest::{self, Document};
use super::progress::Progress;
use super::{io_cause, Cause, ImageError};
use crate::site::SiteConfig;
use crate::store::{ImageMeta, Store};

/// What a load did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadOutcome {
    /// References recorded for it.
    pub references: Vec<String>,
    /// The image.
    pub image: ImageMeta,
    /// False when the store already had it.
    pub converted: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// A resolved image inside an archive or layout directory.
struct Found {
    config: PathBuf,
    manifest: Option<Digest>,
    layers: Vec<LayerFile>,
    tags: Vec<String>,
}

/// Loads `input` into `store`; `tags` add references.
pub fn load(
    input: &Path,
    tags: &[String],
    store: &Store,
    site: &SiteConfig,
    progress: &Progress,
    rootless: bool,
) -> Result<LoadOutcome, ImageError> {
    load_inner(input, tags, store, site, progress, rootless)
        .map_err(|c| c.at("load", input.display()))
}

fn load_inner(
    input: &Path,
    tags: &[String],
    store: &Store,
    site: &SiteConfig,
    progress: &Progress,
    rootless: bool,
) -> Result<LoadOutcome, Cause> {
    let _ = store.clean_stale_work();
    let work = store.work_dir()?;
    let dir = if input.is_dir() {
        input.to_path_buf()
    } else {
        let d = work.path().join("archive");
        extract(input, &d)?;
        d
    };
    let found = if dir.join("index.json").is_file() {
        oci_layout(&dir)?
    } else if dir.join("manifest.json").is_file() {
        docker_archive(&dir)?
    } else {
        return Err(Cause::Invalid(
            "neither a docker-archive (manifest.json) nor an OCI layout (index.json)".into(),
        ));
    };
    let config_bytes =
        std::fs::read(&found.config).map_err(io_cause("cannot read", &found.config))?;
    let id = Digest::of(&config_bytes);
    let (config, platform) = manifest::parse_config(&config_bytes).map_err(Cause::Invalid)?;
    let mut references = found.tags.clone();
    for t in tags {
        references.push(super::reference::Reference::parse(t)?.to_string());
    }
    let tag_all = |image: ImageMeta, converted| -> Result<LoadOutcome, Cause> {
        for r in &references {
            store.tag(r, &image.id)?;
        }
        progress.stage("done", &image.id.to_string());
        Ok(LoadOutcome {
            references: references.clone(),
            image,
            converted,
        })
    };
    if let Some(image) = store.get(&id)? {
        return tag_all(image, false);
    }
    let _lock = store.lock_image(&id, Duration::from_secs(site.store.lock_timeout_s))?;
    if let Some(image) = store.get(&id)? {
        return tag_all(image, false);
    }
    let meta = ImageMeta {
        id,
        manifest: found.manifest,
        size: 0,
        created: 0,
        platform,
        config,
    };
    let compressed_bytes = found
        .layers
        .iter()
        .filter_map(|l| std::fs::metadata(&l.path).ok())
        .fold(0u64, |a, m| a.saturating_add(m.len()));
    let converter = Converter {
        store,
        site,
        progress,
        rootless,
        compressed_bytes,
    };
    let image = converter.convert(&work, found.layers.into_iter().map(Ok), meta)?;
    tag_all(image, true)
}

/// Extracts a tar of regular files and directories only (the archive formats
/// contain nothing else); the tar crate refuses paths leaving `dest`.
fn extract(archive: &Path, dest: &Path) -> Result<(), Cause> {
    std::fs::create_dir(dest).map_err(io_cause("cannot create", dest))?;
    let f = File::open(archive).map_err(io_cause("cannot open", archive))?;
    let mut tar = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, f));
    let entries = tar
        .entries()
        .map_err(io_cause("cannot read archive", archive))?;
    for e in entries {
        let mut e = e.map_err(io_cause("cannot read archive", archive))?;
        match e.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory => {
                e.unpack_in(dest)
                    .map_err(io_cause("cannot extract archive", archive))?;
            }
            _ => {} // docker save adds compatibility symlinks; blobs are what matter
        }
    }
    Ok(())
}

/// A path named inside an archive, refused if it leaves the archive directory.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, Cause> {
    let p = Path::new(name);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(Cause::Invalid(format!(
            "archive names a path outside itself: {name:?}"
        )));
    }
    Ok(dir.join(p))
}

fn docker_archive(dir: &Path) -> Result<Found, Cause> {
    let mpath = dir.join("manifest.json");
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&std::fs::read(&mpath).map_err(io_cause("cannot read", &mpath))?)
            .map_err(|e| Cause::Invalid(format!("manifest.json: {e}")))?;
    let [entry] = &entries[..] else {
        return Err(Cause::Invalid(format!(
            "the archive holds {} images; berth loads archives of one image",
            entries.len()
        )));
    };
    let config = inside(dir, &entry.config)?;
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).map_err(io_cause("cannot read", &config))?)
            .map_err(|e| Cause::Invalid(format!("image config: {e}")))?;
    let diff_ids: Vec<Digest> = serde_json::from_value(cfg["rootfs"]["diff_ids"].clone())
        .map_err(|e| Cause::Invalid(format!("image config rootfs.diff_ids: {e}")))?;
    if diff_ids.len() != entry.layers.len() {
        return Err(Cause::Invalid(
            "manifest.json and the image config disagree on the number of layers".into(),
        ));
    }
    let mut layers = Vec::new();
    for (name, diff) in entry.layers.iter().zip(diff_ids) {
        layers.push(LayerFile {
            digest: diff.clone(),
            path: inside(dir, name)?,
            verify: Verify::DiffId(diff),
            remove_after: false,
        });
    }
    let mut tags = Vec::new();
    for t in entry.repo_tags.iter().flatten() {
        tags.push(super::reference::Reference::parse(t)?.to_string());
    }
    Ok(Found {
        config,
        manifest: None,
        layers,
        tags,
    })
}

fn blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(d.hex())
}

fn read_verified(dir: &Path, d: &Digest) -> Result<Vec<u8>, Cause> {
    let p = blob(dir, d);
    let bytes = std::fs::read(&p).map_err(io_cause("cannot read blob", &p))?;
    if &Digest::of(&bytes) != d {
        return Err(Cause::Invalid(format!(
            "blob {d} does not match its content: the layout is damaged"
        )));
    }
    Ok(bytes)
}

fn oci_layout(dir: &Path) -> Result<Found, Cause> {
    let ipath = dir.join("index.json");
    let index = std::fs::read(&ipath).map_err(io_cause("cannot read", &ipath))?;
    let Document::Index(list) = manifest::parse(&index).map_err(Cause::Invalid)? else {
        return Err(Cause::Invalid("index.json is not an image index".into()));
    };
    let top = match &list[..] {
        [one] => one.clone(),
        _ => manifest::select_platform(&list)
            .map_err(Cause::Invalid)?
            .clone(),
    };
    let mut digest = top.digest.clone();
    let m = loop {
        match manifest::parse(&read_verified(dir, &digest)?).map_err(Cause::Invalid)? {
            Document::Manifest(m) => break m,
            Document::Index(list) => {
                digest = manifest::select_platform(&list)
                    .map_err(Cause::Invalid)?
                    .digest
                    .clone()
            }
        }
    };
    read_verified(dir, &m.config.digest)?;
    let layers = m
        .layers
        .iter()
        .map(|l| LayerFile {
            digest: l.digest.clone(),
            path: blob(dir, &l.digest),
            verify: Verify::Blob(l.digest.clone()),
            remove_after: false,
        })
        .collect();
    Ok(Found {
        config: blob(dir, &m.config.digest),
        manifest: Some(top.digest),
        layers,
        tags: Vec::new(),
    })
}
