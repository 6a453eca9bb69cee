//! OCI image layout writing: blobs, config, manifest, index and `index.json`.
//!
//! The config is our own serde struct rather than oci-spec's type because
//! oci-spec keeps labels in a `HashMap`, whose random iteration order would
//! make digests differ between runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::{write_docker_archive, write_oci_archive};
use super::digest::{hex_part, sha256_bytes};
use super::layer::{Layer, LayerBlob};
pub use super::manifest::{
    blob_descriptor, blob_path, read_json_blob, resolve_tag, Descriptor, Index, Manifest, Platform,
    ANNOTATION_REF_NAME, MEDIA_CONFIG, MEDIA_INDEX, MEDIA_LAYER_GZIP, MEDIA_MANIFEST,
};
use super::{host_arch, ImageError, FIXED_CREATED};

/// Prefix of every test image's repository (`berth-test/busybox`).
pub const REPO_PREFIX: &str = "berth-test/";

#[derive(Serialize)]
struct Config<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    config: RunConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig<'a> {
    env: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    typ: &'a str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

/// What to build: layers (bottom first) plus the runtime config.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Short image name, e.g. `busybox`; the repository is [`REPO_PREFIX`] + name.
    pub name: String,
    /// Tag, e.g. `latest`.
    pub tag: String,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Entrypoint, if any.
    pub entrypoint: Option<Vec<String>>,
    /// Default command, if any.
    pub cmd: Option<Vec<String>>,
    /// Working directory, if any.
    pub working_dir: Option<String>,
    /// User (`uid[:gid]` or name), if any.
    pub user: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Go architecture name; the host's by default.
    pub architecture: String,
    /// Operating system; `linux`.
    pub os: String,
}

impl ImageSpec {
    /// A spec for the host platform with a standard `PATH` and no layers.
    pub fn new(name: &str, tag: &str) -> Self {
        ImageSpec {
            name: name.to_string(),
            tag: tag.to_string(),
            layers: Vec::new(),
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            ],
            entrypoint: None,
            cmd: None,
            working_dir: None,
            user: None,
            labels: BTreeMap::new(),
            architecture: host_arch().to_string(),
            os: "linux".to_string(),
        }
    }
}

/// A manifest written into a layout.
#[derive(Debug, Clone)]
pub struct WrittenImage {
    /// Descriptor of the manifest (with its platform set).
    pub manifest: Descriptor,
    /// Descriptor of the config blob.
    pub config: Descriptor,
    /// The layer blobs, bottom first.
    pub layers: Vec<LayerBlob>,
}

/// One platform entry of an image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformManifest {
    /// Operating system.
    pub os: String,
    /// Go architecture name.
    pub architecture: String,
    /// Manifest digest.
    pub digest: String,
}

/// A built image and where its outputs are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// Short image name (`busybox`); see [`BuiltImage::repository`].
    pub name: String,
    /// Tag (the `ref.name` in the layout's `index.json`).
    pub tag: String,
    /// Digest of what the tag points at: the manifest, or the index for multi-platform images.
    pub manifest_digest: String,
    /// [`MEDIA_MANIFEST`] or [`MEDIA_INDEX`].
    pub media_type: String,
    /// Config digest of the host-platform manifest.
    pub config_digest: String,
    /// Layers of the host-platform manifest, bottom first.
    pub layers: Vec<LayerBlob>,
    /// Index entries (empty for single-platform images).
    pub platforms: Vec<PlatformManifest>,
    /// OCI layout directory.
    pub layout_dir: PathBuf,
    /// `docker save` archive (of the host-platform image).
    pub docker_archive: PathBuf,
    /// The layout directory as one tar.
    pub oci_archive: PathBuf,
}

impl BuiltImage {
    /// Repository name: `berth-test/<name>`.
    pub fn repository(&self) -> String {
        format!("{REPO_PREFIX}{}", self.name)
    }

    /// `berth-test/<name>:<tag>`, as in the docker archive's `RepoTags`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository(), self.tag)
    }

    /// Re-roots the output paths under `dir` (after the image directory was moved).
    pub fn relocate(&mut self, dir: &Path) {
        self.layout_dir = dir.join("layout");
        self.docker_archive = dir.join("docker-archive.tar");
        self.oci_archive = dir.join("oci-archive.tar");
    }
}

/// Writes blobs into a layout directory; [`LayoutWriter::finish`] makes it a valid layout.
pub struct LayoutWriter {
    dir: PathBuf,
    blobs: PathBuf,
}

impl LayoutWriter {
    /// Creates `dir` and `dir/blobs/sha256`.
    pub fn create(dir: &Path) -> Result<Self, ImageError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(ImageError::io("cannot create", &blobs))?;
        Ok(LayoutWriter {
            dir: dir.to_path_buf(),
            blobs,
        })
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Serializes `value` compactly, stores it as a blob and returns its descriptor.
    pub fn write_json<T: Serialize>(
        &self,
        media_type: &str,
        value: &T,
    ) -> Result<Descriptor, ImageError> {
        let bytes = serde_json::to_vec(value).map_err(ImageError::json(media_type))?;
        let digest = sha256_bytes(&bytes);
        let path = self.blobs.join(hex_part(&digest));
        fs::write(&path, &bytes).map_err(ImageError::io("cannot write blob", &path))?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        })
    }

    /// Writes the layers (one thread each, as compression dominates), config and manifest of `spec`.
    pub fn write_image(&self, spec: &ImageSpec) -> Result<WrittenImage, ImageError> {
        let layers: Vec<LayerBlob> = std::thread::scope(|s| {
            let handles: Vec<_> = spec
                .layers
                .iter()
                .map(|l| s.spawn(|| l.write_blob(&self.blobs)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("layer writer thread panicked"))
                .collect::<Result<_, _>>()
        })?;
        let history = layers.iter().map(|_| History {
            created: FIXED_CREATED,
            created_by: "berth-tests image builder",
        });
        let config = Config {
            created: FIXED_CREATED,
            architecture: &spec.architecture,
            os: &spec.os,
            config: RunConfig {
                env: &spec.env,
                entrypoint: spec.entrypoint.as_deref(),
                cmd: spec.cmd.as_deref(),
                working_dir: spec.working_dir.as_deref(),
                user: spec.user.as_deref(),
                labels: &spec.labels,
            },
            rootfs: RootFs {
                typ: "layers",
                diff_ids: layers.iter().map(|l| l.diff_id.as_str()).collect(),
            },
            history: history.collect(),
        };
        let config = self.write_json(MEDIA_CONFIG, &config)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: MEDIA_MANIFEST.to_string(),
            config: config.clone(),
            layers: layers
                .iter()
                .map(|l| blob_descriptor(MEDIA_LAYER_GZIP, &l.digest, l.size))
                .collect(),
        };
        let mut desc = self.write_json(MEDIA_MANIFEST, &manifest)?;
        desc.platform = Some(Platform {
            architecture: spec.architecture.clone(),
            os: spec.os.clone(),
        });
        Ok(WrittenImage {
            manifest: desc,
            config,
            layers,
        })
    }

    /// Writes an image index over `manifests` (which carry their platforms).
    pub fn write_index(&self, manifests: Vec<Descriptor>) -> Result<Descriptor, ImageError> {
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_string()),
            manifests,
        };
        self.write_json(MEDIA_INDEX, &index)
    }

    /// Writes `oci-layout` and `index.json` naming `target` by `tag`.
    pub fn finish(&self, tag: &str, target: &Descriptor) -> Result<(), ImageError> {
        let layout = self.dir.join("oci-layout");
        fs::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(ImageError::io("cannot write", &layout))?;
        let mut top = target.clone();
        top.platform = None;
        top.annotations
            .insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_INDEX.to_string()),
            manifests: vec![top],
        };
        let bytes = serde_json::to_vec(&index).map_err(ImageError::json("index.json"))?;
        let path = self.dir.join("index.json");
        fs::write(&path, bytes).map_err(ImageError::io("cannot write", &path))
    }
}

/// Builds `spec` into `out_dir/{layout/, docker-archive.tar, oci-archive.tar}`.
pub fn build_image(spec: &ImageSpec, out_dir: &Path) -> Result<BuiltImage, ImageError> {
    let writer = LayoutWriter::create(&out_dir.join("layout"))?;
    let image = writer.write_image(spec)?;
    writer.finish(&spec.tag, &image.manifest)?;
    package(&writer, spec, &image, &image.manifest, Vec::new(), out_dir)
}

/// Writes the archives for a finished layout and describes the result;
/// `top` is what the tag names and `image` the host-platform manifest.
pub fn package(
    writer: &LayoutWriter,
    spec: &ImageSpec,
    image: &WrittenImage,
    top: &Descriptor,
    platforms: Vec<PlatformManifest>,
    out_dir: &Path,
) -> Result<BuiltImage, ImageError> {
    let mut built = BuiltImage {
        name: spec.name.clone(),
        tag: spec.tag.clone(),
        manifest_digest: top.digest.clone(),
        media_type: top.media_type.clone(),
        config_digest: image.config.digest.clone(),
        layers: image.layers.clone(),
        platforms,
        layout_dir: PathBuf::new(),
        docker_archive: PathBuf::new(),
        oci_archive: PathBuf::new(),
    };
    built.relocate(out_dir);
    debug_assert_eq!(built.layout_dir, writer.dir());
    write_docker_archive(writer.dir(), &built, &built.docker_archive)?;
    write_oci_archive(writer.dir(), &built.oci_archive)?;
    Ok(built)
}

#[cfg(test)]
#[path = "oci_tests.rs"]
mod tests;
