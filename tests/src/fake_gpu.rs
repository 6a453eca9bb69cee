//! A fake NVIDIA driver for machines without a GPU, to test the NVIDIA hook
//! end to end: built once by [`install`] under `<root>/fake-gpu/`:
//!
//! - `dev/`: char device nodes `nvidia0..3` (195:N, like the driver's; they
//!   cannot be opened), `nvidiactl`, `nvidia-uvm`, `nvidia-uvm-tools`;
//! - `lib/`: the fake NVML (`tests/fake-nvml/nvml.c`, which reports the
//!   nvidiaN nodes of `$FAKE_NVML_DEV_DIR`, default `/dev`) and small real
//!   ELF stand-ins for the other driver libraries, as
//!   `NAME.so.`[`DRIVER_VERSION`] with their sonames, plus a decoy of an
//!   older driver version that must never be injected;
//! - `bin/`: a fake `nvidia-smi` (`-L` lists the GPUs NVML reports, loading
//!   it by soname) and a script standing in for `nvidia-debugdump`.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

use crate::{cc, fsutil, paths};

/// The fake driver's version (the suffix of its library files).
pub const DRIVER_VERSION: &str = "550.54.15";

/// An older version whose library is installed too, as a decoy.
pub const OLD_VERSION: &str = "470.1.1";

/// GPUs of the default fake device directory.
pub const GPUS: u32 = 4;

/// The NVIDIA driver's device major number.
pub const NVIDIA_MAJOR: u64 = 195;

/// The libraries built: name, soname (`None`: the file name itself, as
/// libnvidia-gpucomp has). The hook's other libraries stay absent so the
/// optional ones' absence is exercised.
pub const LIBRARIES: &[(&str, Option<&str>)] = &[
    ("libnvidia-ml", Some("libnvidia-ml.so.1")),
    ("libcuda", Some("libcuda.so.1")),
    (
        "libnvidia-ptxjitcompiler",
        Some("libnvidia-ptxjitcompiler.so.1"),
    ),
    ("libnvidia-nvvm", Some("libnvidia-nvvm.so.4")),
    ("libnvidia-gpucomp", None),
    ("libnvidia-cfg", Some("libnvidia-cfg.so.1")),
];

/// Errors building the fake driver.
#[derive(Debug, thiserror::Error)]
pub enum FakeGpuError {
    /// A file operation failed.
    #[error("fake GPU kit: {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Compiling a part failed.
    #[error("fake GPU kit: {0}")]
    Cc(#[from] cc::CcError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FakeGpuError + '_ {
    move |source| FakeGpuError::Io {
        path: path.into(),
        source,
    }
}

/// The installed fake driver.
#[derive(Debug, Clone)]
pub struct FakeGpu {
    /// Its directory.
    pub dir: PathBuf,
}

impl FakeGpu {
    /// The fake device nodes (NVIDIA_DEV_DIR of the hook).
    pub fn dev_dir(&self) -> PathBuf {
        self.dir.join("dev")
    }
    /// The fake driver libraries (NVIDIA_LIB_DIRS).
    pub fn lib_dir(&self) -> PathBuf {
        self.dir.join("lib")
    }
    /// The fake tools (NVIDIA_BIN_DIRS).
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    /// The hook env that points the NVIDIA hook at the fake driver with the
    /// device nodes of `dev_dir`.
    pub fn hook_env_for(&self, dev_dir: &Path) -> Vec<(&'static str, String)> {
        let lib = self.lib_dir();
        vec![
            (
                "NVML_LIBRARY",
                lib.join("libnvidia-ml.so.1").display().to_string(),
            ),
            ("NVIDIA_LIB_DIRS", lib.display().to_string()),
            ("NVIDIA_BIN_DIRS", self.bin_dir().display().to_string()),
            ("NVIDIA_DEV_DIR", dev_dir.display().to_string()),
            ("FAKE_NVML_DEV_DIR", dev_dir.display().to_string()),
        ]
    }

    /// [`FakeGpu::hook_env_for`] the default device directory.
    pub fn hook_env(&self) -> Vec<(&'static str, String)> {
        self.hook_env_for(&self.dev_dir())
    }
}

/// Where the kit lives.
pub fn dir() -> PathBuf {
    paths::root().join("fake-gpu")
}

/// The fake NVML's UUID of the GPU with device minor `minor`.
pub fn uuid(minor: u32) -> String {
    format!("GPU-fa4e0000-0000-4000-8000-{minor:012x}")
}

fn sources() -> PathBuf {
    paths::workspace().join("tests/fake-nvml")
}

/// Makes a device directory: `nvidiaM` for each of `minors` and the control
/// nodes (nvidiactl 195:255, nvidia-uvm and nvidia-uvm-tools 235:0/1), so
/// tests can give the hook other GPU sets than the default one.
pub fn make_dev_dir(dir: &Path, minors: &[u32]) -> Result<(), FakeGpuError> {
    fsutil::mkdir(dir, 0o755).map_err(io(dir))?;
    let mut nodes: Vec<(String, u64, u64)> = minors
        .iter()
        .map(|m| (format!("nvidia{m}"), NVIDIA_MAJOR, u64::from(*m)))
        .collect();
    nodes.push(("nvidiactl".into(), NVIDIA_MAJOR, 255));
    nodes.push(("nvidia-uvm".into(), 235, 0));
    nodes.push(("nvidia-uvm-tools".into(), 235, 1));
    for (name, major, minor) in nodes {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        mknod(
            &path,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| io(&path)(e.into()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
            .map_err(io(&path))?;
    }
    Ok(())
}

/// Builds the kit into `out` (a fresh directory).
fn build(out: &Path) -> Result<(), FakeGpuError> {
    let src = sources();
    let (lib, bin) = (out.join("lib"), out.join("bin"));
    for d in [&lib, &bin] {
        fsutil::mkdir(d, 0o755).map_err(io(d))?;
    }
    let version_def = format!("-DFAKE_DRIVER_VERSION=\"{DRIVER_VERSION}\"");
    for (name, soname) in LIBRARIES {
        let file = format!("{name}.so.{DRIVER_VERSION}");
        let soname = soname.map(str::to_string).unwrap_or_else(|| file.clone());
        let so_flag = format!("-Wl,-soname,{soname}");
        let stub_def = format!("-DSTUB_NAME={}", name.replace('-', "_"));
        let (source, def) = if *name == "libnvidia-ml" {
            (src.join("nvml.c"), version_def.as_str())
        } else {
            (src.join("stub.c"), stub_def.as_str())
        };
        cc::compile(
            &lib.join(&file),
            &[&source],
            &["-shared", "-fPIC", def, &so_flag],
        )?;
        if soname != file {
            let link = lib.join(&soname);
            symlink(&file, &link).map_err(io(&link))?;
        }
    }
    // A library of another driver version, which the hook must leave out.
    cc::compile(
        &lib.join(format!("libcuda.so.{OLD_VERSION}")),
        &[&src.join("stub.c")],
        &[
            "-shared",
            "-fPIC",
            "-DSTUB_NAME=old_cuda",
            "-Wl,-soname,libcuda.so.1",
        ],
    )?;
    cc::compile(&bin.join("nvidia-smi"), &[&src.join("smi.c")], &["-ldl"])?;
    let dump = bin.join("nvidia-debugdump");
    fsutil::write_atomic(&dump, b"#!/bin/sh\necho fake nvidia-debugdump\n", 0o755)
        .map_err(io(&dump))?;
    make_dev_dir(&out.join("dev"), &(0..GPUS).collect::<Vec<_>>())
}

/// Builds the kit unless an up-to-date build is there (its stamp names the
/// sources' contents); safe to call from parallel test processes.
pub fn install() -> Result<FakeGpu, FakeGpuError> {
    let root = paths::root();
    fsutil::mkdir(&root, 0o755).map_err(io(&root))?;
    let lock_path = root.join("fake-gpu.lock");
    let _lock = crate::lock::exclusive(&lock_path).map_err(io(&lock_path))?;
    let dir = dir();
    let mut stamp = format!("{DRIVER_VERSION}\n");
    for f in ["nvml.c", "smi.c", "stub.c"] {
        let p = sources().join(f);
        let text = std::fs::read(&p).map_err(io(&p))?;
        stamp.push_str(&crate::image::digest::sha256_bytes(&text));
        stamp.push('\n');
    }
    let stamp_file = dir.join("stamp");
    if std::fs::read_to_string(&stamp_file).ok().as_deref() == Some(stamp.as_str()) {
        return Ok(FakeGpu { dir });
    }
    let tmp = root.join(format!("fake-gpu.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    build(&tmp)?;
    fsutil::write_atomic(&tmp.join("stamp"), stamp.as_bytes(), 0o644).map_err(io(&tmp))?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(FakeGpu { dir })
}
