//! Images: references, registry access, manifests, layer unpacking and
//! squashfs conversion into the [`crate::store`].
//!
//! Every failure is one [`ImageError`]: the operation, the image, and the
//! cause with what to do about it.

pub mod auth;
pub mod challenge;
pub mod convert;
pub mod digest;
pub mod load;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod squash;
pub mod tls;
pub mod unpack;

use crate::store::StoreError;

/// An image operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {image}: {cause}")]
pub struct ImageError {
    /// `pull`, `load`, `run`, ...
    pub op: &'static str,
    /// The image as the user named it.
    pub image: String,
    /// Why.
    #[source]
    pub cause: Cause,
}

/// The causes of an [`ImageError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The reference does not parse.
    #[error("{0}")]
    Reference(#[from] reference::ReferenceError),
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer is unsafe or unreadable.
    #[error(transparent)]
    Unpack(#[from] unpack::UnpackError),
    /// mksquashfs failed.
    #[error("mksquashfs failed: {0}")]
    Squash(String),
    /// Manifest, config or archive content is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The image is not in any store.
    #[error("not in the image store: run `berth pull` first, or drop --pull=never")]
    NotInStore,
    /// A local file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl Cause {
    /// Attaches the operation and image.
    pub fn at(self, op: &'static str, image: impl ToString) -> ImageError {
        ImageError {
            op,
            image: image.to_string(),
            cause: self,
        }
    }
}

/// Shorthand for an I/O cause.
pub fn io_cause<'a>(
    what: &'static str,
    path: &'a std::path::Path,
) -> impl FnOnce(std::io::Error) -> Cause + 'a {
    move |source| Cause::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
