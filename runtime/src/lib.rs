//! berth: an OCI runtime for HPC clusters.
//!
//! The library holds one concern per module (youki-style); the `berth`
//! binary in `main.rs` is a thin command-line layer over [`container`].

pub mod args;
pub mod bundle;
pub mod caps;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod console;
pub mod container;
pub mod hooks;
pub mod hooks_d;
pub mod image;
pub mod log;
pub mod namespaces;
pub mod nss;
pub mod process;
pub mod resolve;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod site;
pub mod state;
pub mod store;
pub mod sync;
pub mod tick;
pub mod userns;

/// Every error the runtime can report; each module has its own enum and this
/// one only aggregates them so that the binary prints one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error(transparent)]
    Sync(#[from] sync::SyncError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Namespace(#[from] namespaces::NamespaceError),
    #[error(transparent)]
    Userns(#[from] userns::UsernsError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Console(#[from] console::ConsoleError),
    #[error(transparent)]
    Container(#[from] container::ContainerError),
    #[error(transparent)]
    Process(#[from] process::ProcessError),
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;
