//! `docker save` archives and OCI layout tarballs, written deterministically
//! (sorted entries, fixed metadata) and atomically (temp file, then rename).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use tar::Builder;

use super::digest::hex_part;
use super::oci::{blob_path, BuiltImage};
use super::tarball::{append_bytes, append_dir, append_reader};
use super::{persist, ImageError};

/// One entry of a docker archive's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifest {
    /// Config file name inside the archive.
    pub config: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// Uncompressed layer tar names, bottom first.
    pub layers: Vec<String>,
}

/// What goes into an archive entry.
enum Source {
    Dir,
    Bytes(Vec<u8>),
    File(PathBuf, u64),
    Gunzip(PathBuf, u64),
}

/// Writes a `docker save`-style archive of `image` (its host-platform
/// manifest): config JSON, one uncompressed `<diff_id>/layer.tar` per layer,
/// `manifest.json` and `repositories`.
pub fn write_docker_archive(
    layout: &Path,
    image: &BuiltImage,
    dest: &Path,
) -> Result<(), ImageError> {
    let config_name = format!("{}.json", hex_part(&image.config_digest));
    let config_path = blob_path(layout, &image.config_digest);
    let config_len = fs::metadata(&config_path)
        .map_err(ImageError::io("cannot stat", &config_path))?
        .len();
    let mut entries = vec![(config_name.clone(), Source::File(config_path, config_len))];
    let mut layer_names = Vec::new();
    for l in &image.layers {
        let dir = hex_part(&l.diff_id).to_string();
        let name = format!("{dir}/layer.tar");
        // An image may repeat a layer; the archive holds it once and lists it twice.
        if !layer_names.contains(&name) {
            entries.push((dir.clone(), Source::Dir));
            entries.push((format!("{dir}/VERSION"), Source::Bytes(b"1.0".to_vec())));
            entries.push((
                name.clone(),
                Source::Gunzip(blob_path(layout, &l.digest), l.uncompressed_size),
            ));
        }
        layer_names.push(name);
    }
    let manifest = vec![DockerManifest {
        config: config_name,
        repo_tags: vec![image.reference()],
        layers: layer_names,
    }];
    let manifest =
        serde_json::to_vec(&manifest).map_err(ImageError::json("docker manifest.json"))?;
    entries.push(("manifest.json".into(), Source::Bytes(manifest)));
    if let Some(top) = image.layers.last() {
        let repos =
            serde_json::json!({ image.repository(): { &image.tag: hex_part(&top.diff_id) } });
        entries.push((
            "repositories".into(),
            Source::Bytes(repos.to_string().into_bytes()),
        ));
    }
    write_tar(entries, dest)
}

/// Writes the layout directory as one tar (`oci-archive:` in skopeo terms).
pub fn write_oci_archive(layout: &Path, dest: &Path) -> Result<(), ImageError> {
    let mut entries = Vec::new();
    collect(layout, "", &mut entries)?;
    write_tar(entries, dest)
}

fn collect(dir: &Path, prefix: &str, out: &mut Vec<(String, Source)>) -> Result<(), ImageError> {
    let rd = fs::read_dir(dir).map_err(ImageError::io("cannot list", dir))?;
    for e in rd {
        let e = e.map_err(ImageError::io("cannot list", dir))?;
        let name = format!("{prefix}{}", e.file_name().to_string_lossy());
        let meta = e
            .metadata()
            .map_err(ImageError::io("cannot stat", e.path()))?;
        if meta.is_dir() {
            out.push((name.clone(), Source::Dir));
            collect(&e.path(), &format!("{name}/"), out)?;
        } else {
            out.push((name, Source::File(e.path(), meta.len())));
        }
    }
    Ok(())
}

fn write_tar(mut entries: Vec<(String, Source)>, dest: &Path) -> Result<(), ImageError> {
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(ImageError::io("cannot create temp file in", dir))?;
    let io_err = ImageError::io("cannot write archive", dest);
    let mut b = Builder::new(BufWriter::with_capacity(1 << 20, tmp.as_file()));
    for (name, src) in &entries {
        let r = match src {
            Source::Dir => append_dir(&mut b, name),
            Source::Bytes(data) => append_bytes(&mut b, name, data),
            Source::File(path, len) => {
                let f = File::open(path).map_err(ImageError::io("cannot open", path))?;
                append_reader(&mut b, name, *len, BufReader::new(f))
            }
            Source::Gunzip(path, len) => {
                let f = File::open(path).map_err(ImageError::io("cannot open", path))?;
                append_reader(&mut b, name, *len, GzDecoder::new(BufReader::new(f)))
            }
        };
        r.map_err(ImageError::io("cannot write archive entry", name))?;
    }
    let mut w = b
        .into_inner()
        .map_err(ImageError::io("cannot finish archive", dest))?;
    w.flush().map_err(io_err)?;
    drop(w);
    persist(tmp, dest)
}
