//! Loading and validating `config.json` before anything is created, so that
//! bad input fails with one line and leaves no state, mount or process.

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Errors found in the bundle or its `config.json`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid config.json: {0}")]
    Invalid(String),
    #[error("not supported yet: {0}")]
    Unsupported(String),
}

/// A parsed bundle: its absolute directory, the spec and the absolute rootfs.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute bundle directory.
    pub dir: PathBuf,
    /// The parsed configuration.
    pub spec: Spec,
    /// Absolute path of the root filesystem.
    pub rootfs: PathBuf,
}

/// Parse `<bundle>/config.json` and check it asks only for what berth
/// supports. serde_json's error carries line and column, which is what users
/// need to fix a hand-written config.
pub fn load(bundle: &Path) -> Result<Bundle, ConfigError> {
    let b = parse(bundle)?;
    validate(&b)?;
    Ok(b)
}

/// Reads and parses `bundle/config.json` and resolves the rootfs path,
/// without [`load`]'s checks of what berth supports: for hooks, which read
/// the config of a container the runtime already accepted.
pub fn parse(bundle: &Path) -> Result<Bundle, ConfigError> {
    let dir = std::path::absolute(bundle).map_err(|source| ConfigError::Read {
        path: bundle.into(),
        source,
    })?;
    let path = dir.join("config.json");
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source,
    })?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| ConfigError::Invalid("root.path is missing".into()))?;
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        dir.join(root.path())
    };
    Ok(Bundle { dir, spec, rootfs })
}

/// Parse a standalone process JSON (for `exec --process`).
pub fn load_process(path: &Path) -> Result<oci_spec::runtime::Process, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

fn validate(b: &Bundle) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(&b.rootfs)
        .map_err(|e| ConfigError::Invalid(format!("rootfs {}: {e}", b.rootfs.display())))?;
    if !meta.is_dir() {
        return Err(ConfigError::Invalid(format!(
            "rootfs {} is not a directory",
            b.rootfs.display()
        )));
    }
    let spec = &b.spec;
    check_oci_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| ConfigError::Invalid("process is missing".into()))?;
    if process.args().as_ref().map_or(true, |a| a.is_empty()) {
        return Err(ConfigError::Invalid(
            "process.args must not be empty".into(),
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(ConfigError::Invalid(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        )));
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(ConfigError::Invalid(format!(
                "mount destination {} is not absolute",
                m.destination().display()
            )));
        }
        if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
            return Err(ConfigError::Unsupported(format!(
                "id-mapped mount {}",
                m.destination().display()
            )));
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        for ns in linux.namespaces().iter().flatten() {
            if !seen.insert(ns.typ()) {
                return Err(ConfigError::Invalid(format!(
                    "duplicate namespace type {}",
                    ns.typ()
                )));
            }
            if ns.typ() == LinuxNamespaceType::Time {
                return Err(ConfigError::Unsupported("time namespace".into()));
            }
        }
        if let Some(sc) = linux.seccomp() {
            // Compile now so an unusable profile fails before anything exists.
            crate::seccomp::compile(sc).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        if linux.intel_rdt().is_some() {
            return Err(ConfigError::Unsupported("linux.intelRdt".into()));
        }
        if linux.personality().is_some() {
            return Err(ConfigError::Unsupported("linux.personality".into()));
        }
        for d in linux.devices().iter().flatten() {
            if !d.path().is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "device path {} is not absolute",
                    d.path().display()
                )));
            }
        }
    }
    if process.scheduler().is_some()
        || process.io_priority().is_some()
        || process.exec_cpu_affinity().is_some()
    {
        return Err(ConfigError::Unsupported(
            "process.scheduler, ioPriority and execCPUAffinity".into(),
        ));
    }
    if let Some(hooks) = spec.hooks() {
        // Hooks that run in the runtime's namespaces can be checked now, so a
        // typo fails before anything exists rather than after a fork.
        let early = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.poststart(),
            hooks.poststop(),
        ];
        for h in early.into_iter().flatten().flatten() {
            let p = h.path();
            if !p.is_absolute() {
                return Err(ConfigError::Invalid(format!(
                    "hook path {} is not absolute",
                    p.display()
                )));
            }
            if std::fs::metadata(p).is_err() {
                return Err(ConfigError::Invalid(format!(
                    "hook binary {} does not exist",
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// `ociVersion` MUST be SemVer 2.0.0; an invalid value MUST be an error
/// (runtime-spec config.md "Specification version", "Valid values"). Only
/// major version 1 exists, so any other major is unsupported, not guessed at.
/// An absent `ociVersion` (oci-spec reads it as "") is still accepted, as runc
/// does, so hand-written configs without it keep working.
fn check_oci_version(v: &str) -> Result<(), ConfigError> {
    if v.is_empty() {
        return Ok(());
    }
    let version = semver::Version::parse(v).map_err(|e| {
        ConfigError::Invalid(format!(
            "ociVersion {v:?} is not a SemVer 2.0.0 version: {e}"
        ))
    })?;
    if version.major != 1 {
        return Err(ConfigError::Unsupported(format!("ociVersion {v}")));
    }
    Ok(())
}

#[cfg(test)]
mod oci_version_tests {
    use super::check_oci_version;

    #[test]
    fn accepts_semver_1x() {
        for v in [
            "",
            "1.0.0",
            "1.0.2",
            "1.2.1",
            "1.0.2-dev",
            "1.1.0-rc.1",
            "1.0.0+build.5",
        ] {
            assert!(check_oci_version(v).is_ok(), "{v}");
        }
    }

    #[test]
    fn refuses_invalid_or_other_major() {
        for v in [
            "invalid",
            "1",
            "1.0",
            "1.0.0.0",
            "01.0.0",
            "1.a.0",
            "1.0.0-",
            "1.0.0-a..b",
            "v1.0.0",
        ] {
            let e = check_oci_version(v).unwrap_err().to_string();
            assert!(e.contains("SemVer"), "{v}: {e}");
        }
        let e = check_oci_version("2.0.0").unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
    }
}
