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
    Ok(catalog)
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
