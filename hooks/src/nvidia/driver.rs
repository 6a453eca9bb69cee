//! The host's NVIDIA driver files a container needs: device nodes, the
//! user-space libraries of the running driver version, and its tools.
//! The lists follow nvidia-container-toolkit's (utility and compute
//! capabilities).

use std::path::{Path, PathBuf};

use super::nvml::Gpu;
use crate::elf::{self, ElfInfo};
use crate::libpath;

/// Driver libraries, by name before `.so`. Drivers ship different subsets
/// (libnvidia-gpucomp since 530, libnvidia-compiler before 470); missing
/// ones are skipped except [`REQUIRED_LIBRARIES`].
pub const LIBRARIES: &[&str] = &[
    "libnvidia-ml",
    "libnvidia-cfg",
    "libcuda",
    "libcudadebugger",
    "libnvidia-opencl",
    "libnvidia-gpucomp",
    "libnvidia-ptxjitcompiler",
    "libnvidia-fatbinaryloader",
    "libnvidia-allocator",
    "libnvidia-compiler",
    "libnvidia-nvvm",
    "libnvidia-pkcs11",
    "libnvidia-pkcs11-openssl3",
];

/// Libraries without which no CUDA program runs.
pub const REQUIRED_LIBRARIES: &[&str] = &["libnvidia-ml", "libcuda"];

/// Driver tools, injected when the host has them.
pub const TOOLS: &[&str] = &[
    "nvidia-smi",
    "nvidia-debugdump",
    "nvidia-persistenced",
    "nvidia-cuda-mps-control",
    "nvidia-cuda-mps-server",
];

/// Control devices: `nvidiactl` is required, the others are injected when
/// present (nvidia-uvm appears once its module is loaded).
pub const CONTROL_DEVICES: &[&str] = &[
    "nvidiactl",
    "nvidia-uvm",
    "nvidia-uvm-tools",
    "nvidia-modeset",
];

/// Errors finding the driver's files.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A device node is missing.
    #[error("device node {} is missing: load the NVIDIA driver (nvidia-modprobe) or set NVIDIA_DEV_DIR in the hook's JSON env", path.display())]
    Device { path: PathBuf },
    /// A required library of the running driver version is missing.
    #[error("{file} not found in {dirs}: the driver's libraries do not match the running driver {version}; set NVIDIA_LIB_DIRS in the hook's JSON env")]
    Library {
        file: String,
        dirs: String,
        version: String,
    },
    /// A library file cannot be read or parsed.
    #[error("cannot read the ELF library {}: {reason}", path.display())]
    Elf { path: PathBuf, reason: String },
}

/// A host file and where it goes in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFile {
    /// The host path.
    pub host: PathBuf,
    /// The container path.
    pub container: PathBuf,
}

/// A driver library found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// The host file `NAME.so.VERSION`.
    pub host: PathBuf,
    /// Its file name.
    pub file_name: String,
    /// Its `DT_SONAME` (`libcuda.so.1`), when it has one.
    pub soname: Option<String>,
}

/// The device nodes for `gpus` (container path `/dev/nvidiaMINOR`) and the
/// control devices, from the host directory `dev_dir`.
pub fn devices(dev_dir: &Path, gpus: &[Gpu]) -> Result<Vec<HostFile>, DriverError> {
    let node = |name: String| HostFile {
        host: dev_dir.join(&name),
        container: Path::new("/dev").join(name),
    };
    let mut out = Vec::new();
    for gpu in gpus {
        out.push(node(format!("nvidia{}", gpu.minor)));
    }
    for (i, name) in CONTROL_DEVICES.iter().enumerate() {
        let d = node(name.to_string());
        // nvidiactl (the first) is required, the others only when present.
        if i == 0 || d.host.exists() {
            out.push(d);
        }
    }
    if let Some(missing) = out.iter().find(|d| !d.host.exists()) {
        return Err(DriverError::Device {
            path: missing.host.clone(),
        });
    }
    Ok(out)
}

/// The ELF class and machine of `file`'s first bytes.
fn class_and_machine(file: &Path) -> std::io::Result<Option<(u8, u16)>> {
    let mut head = [0u8; 64];
    std::io::Read::read_exact(&mut std::fs::File::open(file)?, &mut head)?;
    Ok(elf::class_and_machine(&head))
}

/// A read-only mapping of a whole file: parsing the dynamic section touches
/// a few pages instead of reading a driver library's 50 to 100 MB. The
/// libraries are root's and not rewritten while a container starts.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn open(path: &Path) -> std::io::Result<Mapped> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len()).map_err(std::io::Error::other)?;
        // SAFETY: a fresh read-only private mapping of an open file; the
        // fd may close after mmap returns.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping holds `len` readable bytes while self lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what open mapped.
        unsafe { libc::munmap(self.ptr, self.len.max(1)) };
    }
}

/// `file`'s soname when it is an ELF library of this binary's class and
/// machine (`Some(None)` without a soname); `None` when it is of another
/// one, such as the i386 copies on a multiarch host.
fn native_soname(file: &Path) -> Result<Option<Option<String>>, DriverError> {
    let err = |reason: String| DriverError::Elf {
        path: file.to_path_buf(),
        reason,
    };
    let own = class_and_machine(Path::new("/proc/self/exe")).map_err(|e| err(e.to_string()))?;
    let theirs = class_and_machine(file).map_err(|e| err(e.to_string()))?;
    if theirs.is_none() {
        return Err(err("not an ELF file".into()));
    }
    if theirs != own {
        return Ok(None);
    }
    let map = Mapped::open(file).map_err(|e| err(e.to_string()))?;
    let info = ElfInfo::parse(map.bytes()).map_err(err)?;
    Ok(Some(info.soname))
}

/// The driver libraries `NAME.so.VERSION` of [`LIBRARIES`], each from the
/// first directory of `dirs` holding a native copy.
pub fn libraries(dirs: &[PathBuf], version: &str) -> Result<Vec<Library>, DriverError> {
    let mut out = Vec::new();
    for name in LIBRARIES {
        let file_name = format!("{name}.so.{version}");
        let mut found = None;
        for dir in dirs {
            let host = dir.join(&file_name);
            if !host.is_file() {
                continue;
            }
            if let Some(soname) = native_soname(&host)? {
                found = Some(Library {
                    host,
                    file_name: file_name.clone(),
                    soname,
                });
                break;
            }
        }
        match found {
            Some(lib) => out.push(lib),
            None if REQUIRED_LIBRARIES.contains(name) => {
                return Err(DriverError::Library {
                    file: file_name,
                    dirs: join(dirs),
                    version: version.to_string(),
                })
            }
            None => {}
        }
    }
    Ok(out)
}

/// The [`TOOLS`] found in `dirs` (first match), for `/usr/bin` in the container.
pub fn tools(dirs: &[PathBuf]) -> Vec<HostFile> {
    TOOLS
        .iter()
        .filter_map(|t| {
            let host = dirs.iter().map(|d| d.join(t)).find(|p| p.is_file())?;
            Some(HostFile {
                host,
                container: Path::new("/usr/bin").join(t),
            })
        })
        .collect()
}

/// The dynamic linker's directories on the host: those of the libraries in
/// its cache (the directories ld.so.conf lists), then the default ones.
pub fn linker_dirs() -> Vec<PathBuf> {
    let cache = std::fs::read("/etc/ld.so.cache").unwrap_or_default();
    let cached = libpath::parse_cache(&cache)
        .into_iter()
        .filter_map(|(_, path)| Some(Path::new(&path).parent()?.to_path_buf()));
    let mut seen = std::collections::HashSet::new();
    cached
        .chain(libpath::default_dirs().into_iter().map(PathBuf::from))
        .filter(|d| seen.insert(d.clone()))
        .collect()
}

fn join(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(minor: u32) -> Gpu {
        Gpu {
            index: minor,
            minor,
            uuid: format!("GPU-{minor}"),
        }
    }

    #[test]
    fn device_nodes_follow_minor_numbers_and_optional_controls() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["nvidia2", "nvidiactl", "nvidia-uvm"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let got = devices(dir.path(), &[gpu(2)]).unwrap();
        let names: Vec<_> = got.iter().map(|d| d.container.clone()).collect();
        assert_eq!(
            names,
            ["/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm"].map(PathBuf::from)
        );
        let e = devices(dir.path(), &[gpu(3)]).unwrap_err().to_string();
        assert!(e.contains("nvidia3 is missing"), "{e}");
        std::fs::remove_file(dir.path().join("nvidiactl")).unwrap();
        let e = devices(dir.path(), &[gpu(2)]).unwrap_err().to_string();
        assert!(e.contains("nvidiactl is missing"), "{e}");
    }

    #[test]
    fn libraries_need_the_running_version_and_native_elf() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        // libc is a native ELF library; any native library stands in here.
        let libc = Path::new("/lib")
            .join(format!("{}-linux-gnu", std::env::consts::ARCH))
            .join("libc.so.6");
        std::fs::copy(&libc, dir.path().join("libnvidia-ml.so.1.2")).unwrap();
        let e = libraries(&dirs, "1.2").unwrap_err().to_string();
        assert!(e.starts_with("libcuda.so.1.2 not found in"), "{e}");
        std::fs::copy(&libc, dir.path().join("libcuda.so.1.2")).unwrap();
        std::fs::write(dir.path().join("libnvidia-cfg.so.1.2"), b"not elf").unwrap();
        let e = libraries(&dirs, "1.2").unwrap_err().to_string();
        assert!(e.contains("libnvidia-cfg.so.1.2"), "{e}");
        std::fs::remove_file(dir.path().join("libnvidia-cfg.so.1.2")).unwrap();
        let libs = libraries(&dirs, "1.2").unwrap();
        let names: Vec<_> = libs.iter().map(|l| l.file_name.as_str()).collect();
        assert_eq!(names, ["libnvidia-ml.so.1.2", "libcuda.so.1.2"]);
        assert_eq!(libs[0].soname.as_deref(), Some("libc.so.6"));
        assert!(libraries(&dirs, "9.9").is_err());
    }

    #[test]
    fn linker_dirs_hold_the_host_libc() {
        let dirs = linker_dirs();
        assert!(
            dirs.iter().any(|d| d.join("libc.so.6").exists()),
            "{dirs:?}"
        );
        assert!(dirs.contains(&PathBuf::from("/usr/lib")), "{dirs:?}");
    }

    #[test]
    fn tools_come_from_the_first_directory_that_has_them() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("nvidia-smi"), b"").unwrap();
        std::fs::write(a.path().join("nvidia-debugdump"), b"").unwrap();
        let got = tools(&[a.path().to_path_buf(), b.path().to_path_buf()]);
        assert_eq!(got[0].host, b.path().join("nvidia-smi"));
        assert_eq!(got[0].container, Path::new("/usr/bin/nvidia-smi"));
        assert_eq!(got[1].host, a.path().join("nvidia-debugdump"));
        assert_eq!(got.len(), 2);
    }
}
