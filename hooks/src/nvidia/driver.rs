//! The host's NVIDIA driver files a container needs: device nodes, the
//! user-space libraries of the running driver version, and its tools.
//! The lists follow nvidia-container-toolkit's (utility and compute
//! capabilities).

use std::path::{Path, PathBuf};

use super::nvml::Gpu;
use crate::elf::{self, ElfInfo};
use crate::libpath::{self, Host, Tree};

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

/// Control devices every container gets.
pub const REQUIRED_CONTROL_DEVICES: &[&str] = &["nvidiactl"];

/// Control devices injected when present (nvidia-uvm appears once its
/// module is loaded).
pub const OPTIONAL_CONTROL_DEVICES: &[&str] = &["nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"];

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
    let mut out: Vec<HostFile> = gpus
        .iter()
        .map(|gpu| node(format!("nvidia{}", gpu.minor)))
        .chain(REQUIRED_CONTROL_DEVICES.iter().map(|n| node(n.to_string())))
        .collect();
    if let Some(missing) = out.iter().find(|d| !d.host.exists()) {
        return Err(DriverError::Device {
            path: missing.host.clone(),
        });
    }
    out.extend(
        OPTIONAL_CONTROL_DEVICES
            .iter()
            .map(|n| node(n.to_string()))
            .filter(|d| d.host.exists()),
    );
    Ok(out)
}

/// This program's ELF class and machine, which the libraries must share.
fn own_class_and_machine() -> Result<(u8, u16), DriverError> {
    let exe = Path::new("/proc/self/exe");
    Host.head(exe)
        .and_then(|h| elf::class_and_machine(&h))
        .ok_or_else(|| DriverError::Elf {
            path: exe.to_path_buf(),
            reason: "cannot read this program's ELF header".into(),
        })
}

/// `file`'s soname when it is an ELF library of class and machine `own`
/// (`Some(None)` without a soname); `None` when it is of another one, such
/// as the i386 copies on a multiarch host.
fn native_soname(file: &Path, own: (u8, u16)) -> Result<Option<Option<String>>, DriverError> {
    let err = |reason: String| DriverError::Elf {
        path: file.to_path_buf(),
        reason,
    };
    let map = elf::Mapped::open(file).map_err(|e| err(e.to_string()))?;
    match elf::class_and_machine(map.bytes()) {
        None => Err(err("not an ELF file".into())),
        Some(theirs) if theirs != own => Ok(None),
        Some(_) => Ok(Some(ElfInfo::parse(map.bytes()).map_err(err)?.soname)),
    }
}

/// The driver libraries `NAME.so.VERSION` of [`LIBRARIES`], each from the
/// first directory of `dirs` holding a native copy.
pub fn libraries(dirs: &[PathBuf], version: &str) -> Result<Vec<Library>, DriverError> {
    let own = own_class_and_machine()?;
    let mut out = Vec::new();
    for name in LIBRARIES {
        let file_name = format!("{name}.so.{version}");
        let mut found = None;
        for dir in dirs {
            let host = dir.join(&file_name);
            if !host.is_file() {
                continue;
            }
            if let Some(soname) = native_soname(&host, own)? {
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
    linker_dirs_from(&std::fs::read("/etc/ld.so.cache").unwrap_or_default())
}

/// [`linker_dirs`] for the ld.so.cache `cache`.
fn linker_dirs_from(cache: &[u8]) -> Vec<PathBuf> {
    let cached = libpath::parse_cache(cache)
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
        let libc = Path::new("/lib").join(libpath::triplet()).join("libc.so.6");
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
        let unique: std::collections::HashSet<_> = dirs.iter().collect();
        assert_eq!(unique.len(), dirs.len(), "no duplicates: {dirs:?}");
    }

    /// An ld.so.cache in glibc's new format listing `entries` (soname, path).
    fn cache_of(entries: &[(&str, &str)]) -> Vec<u8> {
        let mut head = b"glibc-ld.so.cache1.1".to_vec();
        head.extend((entries.len() as u32).to_ne_bytes());
        head.resize(48, 0);
        let mut table = Vec::new();
        let mut strings = Vec::new();
        let strings_at = head.len() + 24 * entries.len();
        for (soname, path) in entries {
            let mut entry = [0u8; 24];
            for (field, s) in [(4, soname), (8, path)] {
                let off = (strings_at + strings.len()) as u32;
                entry[field..field + 4].copy_from_slice(&off.to_ne_bytes());
                strings.extend(s.as_bytes());
                strings.push(0);
            }
            table.extend(entry);
        }
        [head, table, strings].concat()
    }

    #[test]
    fn linker_dirs_put_the_cache_dirs_first_then_the_defaults() {
        let multiarch = format!("/usr/lib/{}", libpath::triplet());
        let libc = format!("{multiarch}/libc.so.6");
        let cache = cache_of(&[
            ("libvendor.so.1", "/opt/vendor/lib/libvendor.so.1"),
            ("libc.so.6", &libc),
            ("libvendor2.so.1", "/opt/vendor/lib/libvendor2.so.1"),
        ]);
        let mut want = vec![PathBuf::from("/opt/vendor/lib"), PathBuf::from(&multiarch)];
        want.extend(
            libpath::default_dirs()
                .into_iter()
                .filter(|d| *d != multiarch)
                .map(PathBuf::from),
        );
        assert_eq!(linker_dirs_from(&cache), want);
        // Without a cache, only the defaults.
        let defaults: Vec<_> = libpath::default_dirs()
            .into_iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(linker_dirs_from(b""), defaults);
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
