//! The site configuration (`/etc/berth/berth.toml`, or `$BERTH_CONFIG`): typed,
//! validated when loaded, with errors that name the file, the key and the fix.
//! Every key is documented in docs/site-config.md.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default location.
pub const DEFAULT_PATH: &str = "/etc/berth/berth.toml";

/// Errors loading the site configuration.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The file cannot be read.
    #[error("site config {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax or an unknown key / wrong type.
    #[error("site config {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A value is out of range.
    #[error("site config {}: key {key}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// Root trusts only root-owned, non-writable configuration.
    #[error("site config {}: {reason}: run `chown root:root` and `chmod go-w` on it", path.display())]
    Insecure { path: PathBuf, reason: String },
}

/// The whole site configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SiteConfig {
    /// Image stores.
    pub store: StoreConfig,
    /// Registry access.
    pub registry: RegistryConfig,
    /// squashfs conversion.
    pub squashfs: SquashfsConfig,
    /// Mounts added to every container.
    pub mounts: Vec<SiteMount>,
    /// Host devices added to every container.
    pub devices: Vec<SiteDevice>,
    /// Environment rules applied over the image's environment.
    pub environment: EnvironmentConfig,
    /// What users may bind-mount with `--mount`.
    pub user_mounts: UserMountPolicy,
    /// Directory of OCI hook JSON files.
    pub hooks_dir: Option<PathBuf>,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The system store (shared filesystem), written by root, read by all.
    pub system: Option<PathBuf>,
    /// The per-user store; `~` expands to the user's home.
    pub user: String,
    /// Seconds to wait for another process converting the same image.
    pub lock_timeout_s: u64,
    /// Unpack layers in RAM (`/dev/shm`) when it has room, instead of in the
    /// store's directory: only the finished squashfs is written to the store.
    pub ram_staging: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            system: None,
            user: "~/.local/share/berth".into(),
            lock_timeout_s: 900,
            ram_staging: true,
        }
    }
}

/// `[registry]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Extra CA certificates (PEM) trusted besides the system store.
    pub ca_files: Vec<PathBuf>,
    /// `host[:port]` of registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Layers downloaded at once.
    pub parallel_downloads: usize,
    /// Attempts per request on network errors and 5xx answers.
    pub retries: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            ca_files: Vec::new(),
            insecure: Vec::new(),
            parallel_downloads: 4,
            retries: 3,
        }
    }
}

/// `[squashfs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SquashfsConfig {
    /// `zstd`, `lz4`, `gzip`, `xz`, `lzo` or `none`.
    pub compression: String,
    /// Compression level (zstd 1-22, gzip 1-9); ignored by the others.
    pub level: Option<u32>,
    /// mksquashfs threads; 0 = all CPUs.
    pub processors: usize,
}

impl Default for SquashfsConfig {
    fn default() -> Self {
        SquashfsConfig {
            compression: "zstd".into(),
            level: Some(3),
            processors: 0,
        }
    }
}

/// `[[mounts]]`: a bind mount into every container.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteMount {
    /// Host path.
    pub source: PathBuf,
    /// Container path.
    pub destination: PathBuf,
    /// Read-only (default true).
    #[serde(default = "yes")]
    pub readonly: bool,
}

fn yes() -> bool {
    true
}

/// `[[devices]]`: a host device node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDevice {
    /// Device path on the host and in the container.
    pub path: PathBuf,
}

/// `[environment]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvironmentConfig {
    /// Variables set (overriding the image).
    pub set: BTreeMap<String, String>,
    /// Prepended with `:` to the image's value.
    pub prepend: BTreeMap<String, String>,
    /// Appended with `:` to the image's value.
    pub append: BTreeMap<String, String>,
    /// Variables removed.
    pub unset: Vec<String>,
}

/// `[user_mounts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserMountPolicy {
    /// Whether `--mount` is allowed at all.
    pub enabled: bool,
    /// Container paths users may not mount over (prefix match by component).
    pub disallowed_destinations: Vec<PathBuf>,
}

impl Default for UserMountPolicy {
    fn default() -> Self {
        UserMountPolicy {
            enabled: true,
            disallowed_destinations: [
                "/etc",
                "/var",
                "/opt/berth",
                "/proc",
                "/sys",
                "/dev",
                "/usr",
                "/lib",
                "/lib64",
                "/bin",
                "/sbin",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }
}

impl SiteConfig {
    /// Loads `$BERTH_CONFIG`, or `/etc/berth/berth.toml` when it exists, or defaults.
    pub fn load() -> Result<Self, SiteError> {
        match std::env::var_os("BERTH_CONFIG") {
            Some(p) => Self::load_file(Path::new(&p)),
            None if Path::new(DEFAULT_PATH).exists() => Self::load_file(Path::new(DEFAULT_PATH)),
            None => Ok(Self::default()),
        }
    }

    /// Loads and validates one file.
    pub fn load_file(path: &Path) -> Result<Self, SiteError> {
        let text = std::fs::read_to_string(path).map_err(|source| SiteError::Read {
            path: path.into(),
            source,
        })?;
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            check_owner(path)?;
        }
        let cfg: SiteConfig = toml::from_str(&text).map_err(|e| SiteError::Parse {
            path: path.into(),
            message: e.to_string().replace('\n', " ").trim().to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<(), SiteError> {
        let bad = |key: &str, reason: &str| {
            Err(SiteError::Invalid {
                path: path.into(),
                key: key.into(),
                reason: reason.into(),
            })
        };
        if self.store.system.as_ref().is_some_and(|p| !p.is_absolute()) {
            return bad("store.system", "must be an absolute path");
        }
        if !(self.store.user.starts_with('/') || self.store.user.starts_with("~/")) {
            return bad("store.user", "must be an absolute path or start with ~/");
        }
        if !(1..=64).contains(&self.registry.parallel_downloads) {
            return bad("registry.parallel_downloads", "must be between 1 and 64");
        }
        if !(1..=10).contains(&self.registry.retries) {
            return bad("registry.retries", "must be between 1 and 10");
        }
        for (i, f) in self.registry.ca_files.iter().enumerate() {
            if !f.is_absolute() {
                return bad(
                    &format!("registry.ca_files[{i}]"),
                    "must be an absolute path",
                );
            }
        }
        if !["zstd", "lz4", "gzip", "xz", "lzo", "none"]
            .contains(&self.squashfs.compression.as_str())
        {
            return bad(
                "squashfs.compression",
                "must be one of zstd, lz4, gzip, xz, lzo, none",
            );
        }
        for (i, m) in self.mounts.iter().enumerate() {
            if !m.source.is_absolute() || !m.destination.is_absolute() {
                return bad(
                    &format!("mounts[{i}]"),
                    "source and destination must be absolute paths",
                );
            }
        }
        for (i, d) in self.devices.iter().enumerate() {
            if !d.path.starts_with("/dev/") {
                return bad(&format!("devices[{i}].path"), "must be a path under /dev/");
            }
        }
        let env = &self.environment;
        for (table, keys) in [
            ("set", env.set.keys().collect::<Vec<_>>()),
            ("prepend", env.prepend.keys().collect()),
            ("append", env.append.keys().collect()),
            ("unset", env.unset.iter().collect()),
        ] {
            for k in keys {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return bad(
                        &format!("environment.{table}.{k}"),
                        "variable names must be non-empty and contain no '='",
                    );
                }
            }
        }
        if self.hooks_dir.as_ref().is_some_and(|p| !p.is_absolute()) {
            return bad("hooks_dir", "must be an absolute path");
        }
        Ok(())
    }

    /// The user store for the calling user.
    pub fn user_store(&self) -> PathBuf {
        if let Some(rest) = self.store.user.strip_prefix("~/") {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(rest)
        } else {
            PathBuf::from(&self.store.user)
        }
    }
}

fn check_owner(path: &Path) -> Result<(), SiteError> {
    let insecure = |reason: String| SiteError::Insecure {
        path: path.into(),
        reason,
    };
    for p in [Some(path), path.parent()].into_iter().flatten() {
        let m = std::fs::metadata(p).map_err(|source| SiteError::Read {
            path: p.into(),
            source,
        })?;
        if m.uid() != 0 {
            return Err(insecure(format!(
                "{} is owned by uid {}, not root",
                p.display(),
                m.uid()
            )));
        }
        let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky {
            return Err(insecure(format!(
                "{} is group- or world-writable",
                p.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<SiteConfig, SiteError> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("berth.toml");
        std::fs::write(&p, text).unwrap();
        SiteConfig::load_file(&p)
    }

    #[test]
    fn example_config_loads() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../etc/berth.toml"))
                .unwrap();
        let cfg = load(&text).unwrap();
        assert_eq!(cfg.squashfs.compression, "zstd");
        assert!(!cfg.mounts.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let e = load("[registry]\nretries = 0\n").unwrap_err().to_string();
        assert!(
            e.contains("registry.retries") && e.contains("between 1 and 10"),
            "{e}"
        );
        let e = load("[store]\nsytem = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("sytem"), "{e}");
        let e = load("[[mounts]]\nsource = \"rel\"\ndestination = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mounts[0]"), "{e}");
    }

    #[test]
    fn world_writable_config_is_refused_for_root() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("berth.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        let r = SiteConfig::load_file(&p);
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            assert!(r.unwrap_err().to_string().contains("world-writable"));
        } else {
            assert!(r.is_ok());
        }
    }
}
