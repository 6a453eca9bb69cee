//! Where the test kit keeps its state on the host.
//!
//! Everything lives under one root (default `/var/tmp/berth-dev`, override with
//! `BERTH_DEV_DIR`) so that teardown and `git clean` never have to guess.

use std::path::{Path, PathBuf};

/// The test kit's state root.
pub fn root() -> PathBuf {
    std::env::var_os("BERTH_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/berth-dev"))
}

/// The default cluster's directory (configs, logs, spool, state).
pub fn cluster_dir() -> PathBuf {
    root().join("cluster")
}

/// The directory of a named registry instance (`plain`, `secure`).
pub fn registry_dir(name: &str) -> PathBuf {
    root().join("registry").join(name)
}

/// Where built test images are written.
pub fn images_dir() -> PathBuf {
    root().join("images")
}

/// Cache for expensive images (the large one), kept across runs.
pub fn image_cache_dir() -> PathBuf {
    std::env::var_os("BERTH_IMAGE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/berth-tests/images"))
}

/// The workspace root (this crate's parent), found at compile time.
pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The target directory cargo builds into (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// The newer of the release and debug builds of `file` in the target directory,
/// so a stale build left by an earlier benchmark never shadows a fresh one.
fn newest_build(file: &str) -> PathBuf {
    let target = target_dir();
    let mtime = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join(file))
        .filter(|p| p.is_file())
        .max_by_key(mtime)
        .unwrap_or_else(|| target.join("debug").join(file))
}

/// The freshly built SPANK plugin.
pub fn spank_plugin() -> PathBuf {
    newest_build("libspank_berth.so")
}

/// The freshly built `berth-dev` binary (the test kit's own command).
pub fn berth_dev_bin() -> PathBuf {
    newest_build("berth-dev")
}

/// The `berth` binary under test: `$BERTH_BIN` when set (scripts/test sets
/// it to the static release build that sites install), else the freshly
/// built one.
pub fn berth_bin() -> PathBuf {
    berth_under_test(newest_build("berth"))
}

/// `$BERTH_BIN` when set, else `built` (a test crate's own
/// `CARGO_BIN_EXE_berth`).
pub fn berth_under_test(built: impl Into<PathBuf>) -> PathBuf {
    std::env::var_os("BERTH_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| built.into())
}

/// A freshly built hook binary (`berth-hook-NAME`).
pub fn hook_bin(file: &str) -> PathBuf {
    newest_build(file)
}
