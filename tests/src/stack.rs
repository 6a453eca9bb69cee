//! Everything the tests and the demo need, up or down in one call: the test user,
//! the Slurm cluster, both registries and the pushed test images.

use crate::cluster::{Cluster, ClusterConfig, ClusterError};
use crate::registry::{Registry, RegistryConfig, RegistryError};
use crate::{image, paths, user};

/// Errors bringing the stack up or down.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The test user could not be created.
    #[error(transparent)]
    User(#[from] user::UserError),
    /// The cluster failed.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// A registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Building or pushing images failed.
    #[error(transparent)]
    Image(#[from] image::ImageError),
}

impl StackError {
    /// The tail of the failing daemon's log, when a daemon failed.
    pub fn log_tail(&self) -> &[String] {
        match self {
            StackError::Cluster(ClusterError::Daemon(d))
            | StackError::Registry(RegistryError::Daemon(d)) => d.log_tail(),
            _ => &[],
        }
    }
}

/// The running services.
pub struct Stack {
    /// The Slurm cluster.
    pub cluster: Cluster,
    /// The plain-HTTP registry.
    pub plain: Registry,
    /// The TLS + basic-auth registry.
    pub secure: Registry,
}

/// Starts (or reuses) the test user, the cluster and both registries.
pub fn services() -> Result<Stack, StackError> {
    user::ensure()?;
    let plain = Registry::shared(RegistryConfig::plain())?;
    let secure = Registry::shared(RegistryConfig::secure())?;
    let config = crate::site::path();
    crate::site::write().map_err(|source| ClusterError::Io {
        path: config,
        source,
    })?;
    let cluster = Cluster::shared()?;
    Ok(Stack {
        cluster,
        plain,
        secure,
    })
}

/// Builds the test images (reusing cached ones) and pushes each to both
/// registries under `berth-test/<name>:<tag>`. Serialised by a lock so parallel
/// test processes build once.
pub fn images(stack: &Stack) -> Result<image::Catalog, StackError> {
    let lock = paths::root().join("images.lock");
    let _held = crate::lock::exclusive(&lock).map_err(image::ImageError::io("lock", &lock))?;
    let catalog = image::build_all(&paths::images_dir(), &paths::image_cache_dir())?;
    for reg in [&stack.plain, &stack.secure] {
        let target = reg.push_target();
        for img in catalog.images() {
            image::push::push(
                &img.layout_dir,
                &img.tag,
                &target,
                &img.repository(),
                &img.tag,
            )?;
        }
    }
    forget_stale_refs(&catalog);
    Ok(catalog)
}

/// Removes the test store's tag references to an older build of a test
/// image: steps pull a tag only when the store has no reference for it, so a
/// rebuilt image would otherwise never reach the cluster.
fn forget_stale_refs(catalog: &image::Catalog) {
    let dir = crate::site::store().join("refs");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let (Some(reference), Some(id)) = (r["reference"].as_str(), r["id"].as_str()) else {
            continue;
        };
        let stale = catalog.images().iter().any(|img| {
            reference.ends_with(&format!("/{}:{}", img.repository(), img.tag))
                && id != img.config_digest
        });
        if stale {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot forget a stale image reference: steps may run an older build");
            }
        }
    }
}

/// Stops the cluster and both registries; reports the first failure.
pub fn down() -> Result<(), StackError> {
    let cluster = Cluster::new(ClusterConfig::default_for_host()).stop();
    let plain = Registry::new(RegistryConfig::plain()).stop();
    let secure = Registry::new(RegistryConfig::secure()).stop();
    cluster?;
    plain?;
    secure?;
    Ok(())
}
