//! Manifests, indexes and image configs (OCI and Docker schema 2), and the
//! choice of the host's platform in an index.

use serde::Deserialize;

use super::digest::Digest;

/// Media types berth accepts, for the `Accept` header.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type.
    #[serde(default)]
    pub media_type: String,
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform (index entries only).
    pub platform: Option<Platform>,
}

/// An index entry's platform.
#[derive(Debug, Clone, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, ...).
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// CPU variant (`v8`).
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A parsed manifest document.
#[derive(Debug)]
pub enum Document {
    /// A single-platform manifest.
    Manifest(Manifest),
    /// An index / manifest list.
    Index(Vec<Descriptor>),
}

/// The host platform in OCI terms (`linux`, `amd64`).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "x86" => "386",
        other => other,
    };
    ("linux", arch)
}

/// Parses a manifest or index; schema 1 and unknown documents are refused.
pub fn parse(bytes: &[u8]) -> Result<Document, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not JSON: {e}"))?;
    if v.get("schemaVersion").and_then(|s| s.as_u64()) == Some(1) {
        return Err("Docker schema 1 manifests are not supported: push the image again with a current client".into());
    }
    if let Some(list) = v.get("manifests") {
        let list: Vec<Descriptor> =
            serde_json::from_value(list.clone()).map_err(|e| format!("invalid index: {e}"))?;
        return Ok(Document::Index(list));
    }
    if v.get("config").is_some() {
        let m: Manifest =
            serde_json::from_value(v).map_err(|e| format!("invalid manifest: {e}"))?;
        return Ok(Document::Manifest(m));
    }
    Err("neither an image manifest nor an index".into())
}

/// The index entry for the host platform.
pub fn select_platform(entries: &[Descriptor]) -> Result<&Descriptor, String> {
    let (os, arch) = host_platform();
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .ok_or_else(|| {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|d| {
                    d.platform
                        .as_ref()
                        .map(|p| format!("{}/{}", p.os, p.architecture))
                })
                .collect();
            format!(
                "no {os}/{arch} image in the index (it has {})",
                have.join(", ")
            )
        })
}

/// The fields of an image config that bundles use.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` list.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// User (name, uid or uid:gid).
    #[serde(default)]
    pub user: Option<String>,
}

/// Extracts the `config` object and `os/arch` of a config blob.
pub fn parse_config(bytes: &[u8]) -> Result<(serde_json::Value, String), String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("image config is not JSON: {e}"))?;
    let os = v.get("os").and_then(|s| s.as_str()).unwrap_or("linux");
    let arch = v
        .get("architecture")
        .and_then(|s| s.as_str())
        .unwrap_or("unknown");
    let cfg = v.get("config").cloned().unwrap_or(serde_json::Value::Null);
    Ok((cfg, format!("{os}/{arch}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_resolves_to_the_host_platform() {
        let (_, arch) = host_platform();
        let d = |n: char| format!("sha256:{}", n.to_string().repeat(64));
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"digest":"{}","size":1,"platform":{{"os":"linux","architecture":"s390x-none"}}}},
              {{"digest":"{}","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}]}}"#,
            d('a'),
            d('b')
        );
        let Document::Index(list) = parse(json.as_bytes()).unwrap() else {
            panic!("an index")
        };
        assert_eq!(select_platform(&list).unwrap().digest.to_string(), d('b'));
        assert!(select_platform(&list[..1])
            .unwrap_err()
            .contains("linux/s390x-none"));
        assert!(parse(br#"{"schemaVersion":1}"#)
            .unwrap_err()
            .contains("schema 1"));
    }
}
