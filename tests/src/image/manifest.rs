//! The OCI JSON documents (descriptor, manifest, index) and reading them
//! back from a layout.
//!
//! These are our own serde structs rather than oci-spec's types because
//! oci-spec keeps annotations in `HashMap`s, whose random iteration order
//! would make digests differ between runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::digest::hex_part;
use super::ImageError;
/// Media type of an OCI image manifest.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Media type of a gzip-compressed layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Annotation naming a tag in `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// `sha256:` digest.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Platform, for entries of an image index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (sorted, for stable digests).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// OS and architecture of a manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// Go architecture name (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
}

/// An OCI image manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// An OCI image index (also the shape of a layout's `index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// [`MEDIA_INDEX`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Manifests (or nested indexes).
    pub manifests: Vec<Descriptor>,
}

/// A descriptor with no platform or annotations.
pub fn blob_descriptor(media_type: &str, digest: &str, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: digest.into(),
        size,
        platform: None,
        annotations: BTreeMap::new(),
    }
}

/// Path of a blob in a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(hex_part(digest))
}

/// Reads and parses a JSON blob from a layout.
pub fn read_json_blob<T: DeserializeOwned>(layout: &Path, digest: &str) -> Result<T, ImageError> {
    let path = blob_path(layout, digest);
    let bytes = fs::read(&path).map_err(ImageError::io("cannot read blob", &path))?;
    serde_json::from_slice(&bytes).map_err(ImageError::json(format!("blob {digest}")))
}

/// The descriptor `index.json` names `tag` with.
pub fn resolve_tag(layout: &Path, tag: &str) -> Result<Descriptor, ImageError> {
    let path = layout.join("index.json");
    let bytes = fs::read(&path).map_err(ImageError::io("cannot read", &path))?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(ImageError::json(path.display().to_string()))?;
    index
        .manifests
        .into_iter()
        .find(|d| d.annotations.get(ANNOTATION_REF_NAME).map(String::as_str) == Some(tag))
        .ok_or_else(|| ImageError::Layout {
            path: path.clone(),
            reason: format!("no manifest tagged {tag:?}"),
        })
}
