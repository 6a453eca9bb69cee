//! Bundles for `berth run IMAGE`: the image's squashfs mounted read-only
//! (optionally under a tmpfs overlay), and a `config.json` generated from the
//! image config, the site config and the user's options.

pub mod annotations;
pub mod mount;
pub mod run;
pub mod slurm;
pub mod spec;

/// Errors preparing or running a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An option is invalid or refused by the site policy.
    #[error("{0}")]
    Invalid(String),
    /// A mount failed.
    #[error("cannot mount {what}: {source}")]
    Mount {
        what: String,
        source: std::io::Error,
    },
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The image could not be found or pulled.
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    /// The runtime failed.
    #[error("{0}")]
    Runtime(String),
    /// The site's hooks directory is broken or untrusted.
    #[error(transparent)]
    HooksD(#[from] crate::hooks_d::HooksDError),
}
