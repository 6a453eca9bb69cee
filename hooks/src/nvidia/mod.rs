//! The NVIDIA GPU hook: gives a container the host GPUs named by annotation
//! `com.berth.gpus` (host indices or `all`), like nvidia-container-toolkit:
//! their device nodes and the control devices, the running driver's
//! user-space libraries (with their soname links, in the linker cache) and
//! its tools. The driver is discovered through NVML, loaded at run time.
//!
//! The container sees only the injected GPUs; CUDA numbers them from 0 in
//! host order. Under Slurm the plugin renumbers each task's
//! `CUDA_VISIBLE_DEVICES` to that order (see the plugin's `gpus` module).

pub mod config;
pub mod driver;
pub mod nvml;

use std::path::{Path, PathBuf};

use crate::inject::{Access, InjectError, Rootfs};
use crate::{Container, HookError};
use config::{Config, ConfigError, Selection};
use driver::DriverError;
use nvml::{Gpu, Nvml, NvmlError};

/// The annotation listing the container's host GPUs.
pub const ANNOTATION: &str = "com.berth.gpus";

/// Errors of the NVIDIA hook.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaError {
    /// Reading the container or entering its namespace.
    #[error(transparent)]
    Hook(#[from] HookError),
    /// The GPU list or the configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// NVML.
    #[error(transparent)]
    Nvml(#[from] NvmlError),
    /// The host's driver files.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// Changing the rootfs.
    #[error(transparent)]
    Inject(#[from] InjectError),
    /// The linker cache refresh.
    #[error("cannot refresh the container's linker cache: {0}")]
    Ldconfig(String),
}

/// What the hook injects.
#[derive(Debug)]
pub struct Plan {
    /// The driver version NVML reports.
    pub version: String,
    /// The selected GPUs, in the container's order.
    pub gpus: Vec<Gpu>,
    /// Device nodes.
    pub devices: Vec<driver::HostFile>,
    /// Driver libraries.
    pub libraries: Vec<driver::Library>,
    /// Tools.
    pub tools: Vec<driver::HostFile>,
}

/// Asks NVML for the GPUs of `selection` and finds the driver's files.
pub fn plan(config: &Config, selection: &Selection) -> Result<Plan, NvidiaError> {
    let nvml = Nvml::open(&config.nvml_library)?;
    let version = nvml.driver_version()?;
    let indices = selection.indices(nvml.count()?)?;
    let gpus = indices
        .into_iter()
        .map(|i| nvml.gpu(i))
        .collect::<Result<Vec<_>, _>>()?;
    drop(nvml);
    let lib_dirs = config.lib_dirs.clone().unwrap_or_else(driver::linker_dirs);
    Ok(Plan {
        devices: driver::devices(&config.dev_dir, &gpus)?,
        libraries: driver::libraries(&lib_dirs, &version)?,
        tools: driver::tools(&config.bin_dirs),
        version,
        gpus,
    })
}

/// The container directory for the libraries: the configured one, else the
/// image's own library directory (Debian multiarch, then lib64), else
/// /usr/lib, so programs find them even before the cache is read.
fn container_lib_dir(config: &Config, rootfs: &Rootfs) -> PathBuf {
    if let Some(d) = &config.container_lib_dir {
        return d.clone();
    }
    let multiarch = format!("/usr/lib/{}", crate::libpath::triplet());
    let found = [multiarch.as_str(), "/usr/lib64"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| rootfs.exists(d));
    found.unwrap_or_else(|| PathBuf::from("/usr/lib"))
}

/// Injects `plan` into the rootfs.
pub fn inject(plan: &Plan, config: &Config, rootfs: &Rootfs) -> Result<(), NvidiaError> {
    for d in &plan.devices {
        rootfs.bind(&d.host, &d.container, Access::Device)?;
    }
    let dir = container_lib_dir(config, rootfs);
    for lib in &plan.libraries {
        rootfs.bind(&lib.host, &dir.join(&lib.file_name), Access::ReadOnly)?;
        if let Some(soname) = lib.soname.as_ref().filter(|s| **s != lib.file_name) {
            rootfs.symlink(Path::new(&lib.file_name), &dir.join(soname))?;
        }
    }
    for t in &plan.tools {
        rootfs.bind(&t.host, &t.container, Access::ReadOnly)?;
    }
    crate::ldconfig::refresh(rootfs, &[&dir]).map_err(NvidiaError::Ldconfig)
}

/// The hook: reads the container from stdin and injects its GPUs; does
/// nothing when the annotation is absent.
pub fn run() -> Result<(), NvidiaError> {
    let container = Container::from_stdin()?;
    let Some(list) = container.annotation(ANNOTATION) else {
        return Ok(());
    };
    let selection = Selection::parse(list)?;
    let config = Config::from_env();
    // Enter the container's namespace first: setns(CLONE_NEWNS) fails in a
    // multi-threaded process, and a driver library may start threads. The
    // host's files stay reachable there (pivot_root has not run yet).
    container.enter_mount_ns()?;
    let plan = plan(&config, &selection)?;
    let rootfs = Rootfs::open(&container.rootfs)?;
    inject(&plan, &config, &rootfs)
}
