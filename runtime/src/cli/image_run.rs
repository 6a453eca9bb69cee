//! `berth run IMAGE [CMD...]`: pull if missing, mount, create, start, wait,
//! clean up; the exit code is the container's.

use std::path::PathBuf;

use super::image::Common;
use crate::site::SiteConfig;

/// When to contact the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Only when the image is not in a store (no network otherwise).
    Missing,
    /// Always resolve the reference again.
    Always,
    /// Never: fail when the image is not in a store.
    Never,
}

/// Arguments of `berth run IMAGE`.
#[derive(Debug, clap::Args)]
pub struct RunImageArgs {
    #[command(flatten)]
    pub common: Common,
    /// Bind mount SRC:DST[:ro] (checked against the site's user mount policy).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Set an environment variable K=V.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// A writable tmpfs-backed overlay over the image.
    #[arg(long)]
    pub writable: bool,
    /// Enable the MPI hook (annotation com.berth.mpi=true).
    #[arg(long)]
    pub mpi: bool,
    /// Enable the SSH hook (annotation com.berth.ssh=true).
    #[arg(long)]
    pub ssh: bool,
    /// Host GPUs for the GPU hook: `all` or indices like `0,1`
    /// (annotation com.berth.gpus).
    #[arg(long)]
    pub gpus: Option<String>,
    /// Annotation KEY=VALUE for hooks.d selection (repeatable).
    #[arg(long)]
    pub annotation: Vec<String>,
    /// When to pull.
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// Image reference or id.
    pub image: String,
    /// Command and arguments (default: the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs the container; returns its exit code.
pub fn run(site: &SiteConfig, a: RunImageArgs) -> Result<i32, String> {
    crate::bundle::run::run_image(site, &a).map_err(|e| e.to_string())
}

/// The bundle directory root for this user.
pub fn bundles_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/run/berth/bundles")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
            .join("berth/bundles")
    }
}
