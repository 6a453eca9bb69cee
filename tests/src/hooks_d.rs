//! The test cluster's hooks.d: the shipped example files of `etc/hooks.d/`,
//! pointed at the freshly built hook binaries, so e2e tests exercise exactly
//! what a site installs (conditions, stages, env) with only paths changed.
//!
//! Files named `test-*.json` belong to individual tests (added for one case and
//! removed after it) and are left alone by [`install`].

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{fsutil, paths};

/// Where shipped hooks live in a real installation.
const INSTALLED_PREFIX: &str = "/usr/libexec/berth/";

/// The test hooks directory (`hooks_dir` of the test site config).
pub fn dir() -> PathBuf {
    paths::root().join("hooks.d")
}

/// The shipped example files.
fn shipped() -> PathBuf {
    paths::workspace().join("etc/hooks.d")
}

/// Env values the test cluster needs instead of a real site's (e.g. a fake
/// device tree for a GPU hook on a machine without GPUs), by hook name
/// (`berth-hook-NAME`'s NAME).
fn overrides(hook: &str) -> Vec<(&'static str, String)> {
    match hook {
        // The host's own MPICH, wherever its multiarch directory is.
        "mpi" => crate::image::mpi::host_library()
            .map(|p| vec![("MPI_LIBS", p.display().to_string())])
            .unwrap_or_default(),
        // The fake driver of `fake_gpu`, which [`install`] builds.
        "nvidia" => crate::fake_gpu::FakeGpu {
            dir: crate::fake_gpu::dir(),
        }
        .hook_env(),
        // Every simulated node of the test cluster sees the same host directory.
        "barrier" => vec![(
            "BARRIER_DIR",
            crate::paths::root().join("barrier").display().to_string(),
        )],
        _ => Vec::new(),
    }
}

/// Errors installing the test hooks.
#[derive(Debug, thiserror::Error)]
pub enum HooksDError {
    /// A file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A shipped file is not the JSON the runtime reads.
    #[error("{}: {reason}", path.display())]
    Shipped { path: PathBuf, reason: String },
    /// The fake GPU driver the NVIDIA hook is pointed at cannot be built.
    #[error(transparent)]
    FakeGpu(#[from] crate::fake_gpu::FakeGpuError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HooksDError + '_ {
    move |source| HooksDError::Io {
        path: path.into(),
        source,
    }
}

/// Rewrites one shipped file for the test cluster; `None` when its hook binary
/// is not built.
fn rewrite(path: &Path, text: &str) -> Result<Option<String>, HooksDError> {
    let bad = |reason: String| HooksDError::Shipped {
        path: path.into(),
        reason,
    };
    let mut v: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let hook_path = v["hook"]["path"]
        .as_str()
        .ok_or_else(|| bad("no hook.path".into()))?
        .to_string();
    let Some(bin) = hook_path.strip_prefix(INSTALLED_PREFIX) else {
        return Err(bad(format!(
            "hook.path {hook_path} is not under {INSTALLED_PREFIX}"
        )));
    };
    // Canonical: the workspace path holds a `..`, which would show in errors.
    let Ok(built) = std::fs::canonicalize(paths::hook_bin(bin)) else {
        return Ok(None);
    };
    v["hook"]["path"] = built.display().to_string().into();
    let name = bin.strip_prefix("berth-hook-").unwrap_or(bin);
    let over = overrides(name);
    if !over.is_empty() {
        let env = v["hook"]["env"].as_array().cloned().unwrap_or_default();
        let mut env: Vec<String> = env
            .iter()
            .filter_map(|e| e.as_str().map(String::from))
            .collect();
        for (k, val) in over {
            env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
            env.push(format!("{k}={val}"));
        }
        v["hook"]["env"] = env.into();
    }
    Ok(Some(
        serde_json::to_string_pretty(&v).map_err(|e| bad(e.to_string()))?,
    ))
}

/// Installs every shipped `etc/hooks.d/*.json` into [`dir`] (root-owned, files
/// 0644, directory 0755, as the runtime's trust check requires) and removes
/// installed files no longer shipped. A file whose hook binary is not built is
/// skipped: the workspace build (`cargo build --workspace`) builds every hook
/// binary, and a file pointing at a missing binary would fail every container.
/// Builds the fake GPU driver first: the test cluster's nodes have GPUs, so
/// any `--gpus` step runs the NVIDIA hook, which [`overrides`] points at it.
pub fn install() -> Result<PathBuf, HooksDError> {
    crate::fake_gpu::install()?;
    let dir = dir();
    fsutil::mkdir(&dir, 0o755).map_err(io(&dir))?;
    // Test processes install concurrently: one at a time, so none removes a
    // file another is writing.
    let lock_path = paths::root().join("hooks.d.lock");
    let _lock = crate::lock::exclusive(&lock_path).map_err(io(&lock_path))?;
    let src = shipped();
    let mut names = Vec::new();
    let entries = std::fs::read_dir(&src).map_err(io(&src))?;
    for e in entries {
        let path = e.map_err(io(&src))?.path();
        if path.extension() != Some(std::ffi::OsStr::new("json")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let Some(out) = rewrite(&path, &text)? else {
            continue;
        };
        let name = path.file_name().unwrap_or_default().to_owned();
        let dst = dir.join(&name);
        fsutil::write_atomic(&dst, out.as_bytes(), 0o644).map_err(io(&dst))?;
        names.push(name);
    }
    for e in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
        let name = e.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".json") && !n.starts_with("test-") && !names.contains(&name) {
            match std::fs::remove_file(e.path()) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(&e.path())(err))
                }
                _ => {}
            }
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_files_point_at_built_binaries() {
        let text = r#"{"version":"1.0.0","hook":{"path":"/usr/libexec/berth/berth-hook-zz-absent"},
            "when":{"always":true},"stages":["createRuntime"]}"#;
        assert!(rewrite(Path::new("x.json"), text).unwrap().is_none());
        let bad = r#"{"version":"1.0.0","hook":{"path":"/opt/other"}}"#;
        let e = rewrite(Path::new("x.json"), bad).unwrap_err().to_string();
        assert!(e.contains("not under /usr/libexec/berth/"), "{e}");
        // Every shipped file parses and names a shipped binary.
        for e in std::fs::read_dir(shipped()).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap();
            if let Some(out) = rewrite(&e.path(), &text).unwrap() {
                let v: Value = serde_json::from_str(&out).unwrap();
                let p = v["hook"]["path"].as_str().unwrap();
                assert!(Path::new(p).is_file(), "{p}");
            }
        }
    }
}
