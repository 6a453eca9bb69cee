//! The MPI hook: replaces the image's MPI library with the host's
//! ABI-compatible one, so an MPI program built in the image uses the host's
//! interconnect-aware MPI (as Sarus' MPI hook). It runs at createRuntime for
//! containers annotated `com.berth.mpi=true`, configured by the hook JSON's
//! env (see docs/hooks-mpi.md):
//!
//! - `MPI_LIBS`: host MPI libraries (colon-separated), each replacing the
//!   image's library of the same soname after the ABI check ([`abi`]);
//! - `MPI_DEPENDENCY_LIBS`: host libraries added as they are;
//! - `BIND_MOUNTS`: host paths (devices, provider directories) bound at the
//!   same path;
//! - `MPI_COMPATIBILITY_TYPE`: `major` (default), `full` or `strict`;
//! - `LDCONFIG_PATH`: the host's ldconfig, when not /sbin/ldconfig.

pub mod abi;
pub mod glibc;
pub mod plan;

use std::path::{Path, PathBuf};

use crate::inject::{Access, InjectError, Rootfs};
use crate::{Container, HookError};
use abi::Compat;
use plan::{Plan, LIB_DIR};

/// The annotation that selects the hook.
pub const ANNOTATION: &str = "com.berth.mpi";

/// Errors of the MPI hook, each worded for the user.
#[derive(Debug, thiserror::Error)]
pub enum MpiError {
    /// Reading the container failed.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The hook's configuration or a host library is wrong.
    #[error("{0}")]
    Config(String),
    /// The image lacks a library the host's replaces.
    #[error("{0}")]
    Missing(String),
    /// The image's library fails the ABI rule.
    #[error("{0}")]
    Incompatible(String),
    /// The image's glibc is too old and cannot be replaced.
    #[error("{0}")]
    Glibc(String),
    /// A bind into the container failed.
    #[error("{}{}", .0, read_only_hint(.0))]
    Inject(#[from] InjectError),
    /// ldconfig failed.
    #[error("cannot refresh the image's linker cache: {0}")]
    Ldconfig(String),
}

/// Adding a library on a read-only root fails: say what to do about it.
fn read_only_hint(e: &InjectError) -> &'static str {
    match e {
        InjectError::Path { source, .. } if source.raw_os_error() == Some(libc::EROFS) => {
            " (the image lacks libraries the host MPI needs and its root is read-only: add them to the image or run with --container-writable)"
        }
        _ => "",
    }
}

/// The hook's configuration, from its environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// `MPI_LIBS`.
    pub libs: Vec<PathBuf>,
    /// `MPI_DEPENDENCY_LIBS`.
    pub dependency_libs: Vec<PathBuf>,
    /// `BIND_MOUNTS`.
    pub bind_mounts: Vec<PathBuf>,
    /// `MPI_COMPATIBILITY_TYPE`.
    pub compat: Compat,
    /// `LDCONFIG_PATH`.
    pub ldconfig: Option<PathBuf>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, MpiError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (a variable lookup).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, MpiError> {
        let list = |key: &str| -> Result<Vec<PathBuf>, MpiError> {
            let paths: Vec<PathBuf> = get(key)
                .unwrap_or_default()
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
            match paths.iter().find(|p| !p.is_absolute()) {
                Some(p) => Err(MpiError::Config(format!(
                    "{key}: {} is not an absolute path",
                    p.display()
                ))),
                None => Ok(paths),
            }
        };
        let libs = list("MPI_LIBS")?;
        if libs.is_empty() {
            return Err(MpiError::Config(
                "MPI_LIBS is not set: list the host MPI libraries in the hook's env".into(),
            ));
        }
        let compat = match get("MPI_COMPATIBILITY_TYPE").filter(|s| !s.is_empty()) {
            Some(s) => s.parse().map_err(MpiError::Config)?,
            None => Compat::default(),
        };
        Ok(Config {
            libs,
            dependency_libs: list("MPI_DEPENDENCY_LIBS")?,
            bind_mounts: list("BIND_MOUNTS")?,
            compat,
            ldconfig: get("LDCONFIG_PATH")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        })
    }
}

/// The hook's `main`: reads the container from stdin and injects the host MPI.
pub fn run() -> Result<(), MpiError> {
    let container = Container::from_stdin()?;
    if !container.flag(ANNOTATION) {
        // The hook JSON's `when` selects by this annotation; a hook file
        // without it must not change containers that did not ask.
        return Ok(());
    }
    let cfg = Config::from_env()?;
    container.enter_mount_ns()?;
    let root = Rootfs::open(&container.rootfs)?;
    let plan = plan::plan(&cfg, &root)?;
    apply(&plan, &cfg, &root)
}

/// Binds everything `plan` lists, then the `BIND_MOUNTS`, then refreshes the
/// linker cache when libraries were added.
pub fn apply(plan: &Plan, cfg: &Config, root: &Rootfs) -> Result<(), MpiError> {
    for (host, image) in plan.replace.iter().chain(&plan.glibc).chain(&plan.add) {
        root.bind(host, image, Access::ReadOnly)?;
    }
    for path in &cfg.bind_mounts {
        let md = std::fs::metadata(path).map_err(|e| {
            MpiError::Config(format!(
                "BIND_MOUNTS: {} does not exist on the host ({e}): fix the hook's env",
                path.display()
            ))
        })?;
        use std::os::unix::fs::FileTypeExt;
        let ft = md.file_type();
        let access = if ft.is_char_device() || ft.is_block_device() {
            Access::Device
        } else {
            Access::ReadWrite
        };
        root.bind(path, path, access)?;
    }
    if !plan.add.is_empty() {
        crate::ldconfig::refresh_with(cfg.ldconfig.as_deref(), root, &[Path::new(LIB_DIR)])
            .map_err(MpiError::Ldconfig)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, MpiError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn config_from_env() {
        let c = cfg(&[
            ("MPI_LIBS", "/usr/lib/a.so.1:/usr/lib/b.so.2"),
            ("MPI_DEPENDENCY_LIBS", ""),
            ("BIND_MOUNTS", "/dev/cxi0"),
            ("MPI_COMPATIBILITY_TYPE", "strict"),
        ])
        .unwrap();
        assert_eq!(c.libs.len(), 2);
        assert!(c.dependency_libs.is_empty());
        assert_eq!(c.bind_mounts, [PathBuf::from("/dev/cxi0")]);
        assert_eq!(c.compat, Compat::Strict);
        assert_eq!(c.ldconfig, None);
        let err = |v: &[(&str, &str)]| cfg(v).unwrap_err().to_string();
        assert!(err(&[]).contains("MPI_LIBS is not set"));
        assert!(err(&[("MPI_LIBS", "lib/a.so.1")]).contains("not an absolute path"));
        assert!(
            err(&[("MPI_LIBS", "/a.so.1"), ("MPI_COMPATIBILITY_TYPE", "any")])
                .contains("major, full, strict")
        );
    }

    #[test]
    fn read_only_root_says_what_to_do() {
        let e = InjectError::Path {
            what: "create",
            path: PathBuf::from("/opt/berth/mpi/lib/libx.so.1"),
            source: std::io::Error::from_raw_os_error(libc::EROFS),
        };
        let msg = MpiError::from(e).to_string();
        assert!(msg.contains("--container-writable"), "{msg}");
    }
}
