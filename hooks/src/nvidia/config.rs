//! The hook's configuration (the `env` of its hooks.d JSON) and the GPU list
//! it is asked for (annotation `com.berth.gpus`).

use std::path::PathBuf;

/// Errors in the configuration or the GPU list.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An entry of the GPU list is not an index.
    #[error("annotation com.berth.gpus={list:?}: {entry:?} is not a GPU index; expected a comma list of host GPU indices such as 0,1 or `all`")]
    BadEntry { list: String, entry: String },
    /// An index the driver does not have.
    #[error("GPU {index} was allocated but NVML reports {count} GPU(s) on this node (valid indices: {valid}); check gres.conf or the --gpus list")]
    Missing {
        index: u32,
        count: u32,
        valid: String,
    },
}

/// Where the hook finds the driver on the host, and where it puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `NVML_LIBRARY`: the NVML library (default `libnvidia-ml.so.1`, found
    /// by the dynamic loader).
    pub nvml_library: String,
    /// `NVIDIA_LIB_DIRS`: colon list of host directories searched for the
    /// driver libraries (default: the dynamic linker's directories).
    pub lib_dirs: Option<Vec<PathBuf>>,
    /// `NVIDIA_BIN_DIRS`: colon list of host directories searched for the
    /// driver tools (default `/usr/bin`).
    pub bin_dirs: Vec<PathBuf>,
    /// `NVIDIA_DEV_DIR`: where the host's device nodes are (default `/dev`).
    pub dev_dir: PathBuf,
    /// `NVIDIA_CONTAINER_LIB_DIR`: the container directory the libraries go
    /// to (default: the image's multiarch or lib64 directory, else /usr/lib).
    pub container_lib_dir: Option<PathBuf>,
}

fn dirs(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

impl Config {
    /// Reads the configuration through `var` (the process environment in
    /// the hook; a closure so tests need not change their own environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Config {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        Config {
            nvml_library: set("NVML_LIBRARY").unwrap_or_else(|| "libnvidia-ml.so.1".into()),
            lib_dirs: set("NVIDIA_LIB_DIRS").map(|v| dirs(&v)),
            bin_dirs: set("NVIDIA_BIN_DIRS")
                .map(|v| dirs(&v))
                .unwrap_or_else(|| vec![PathBuf::from("/usr/bin")]),
            dev_dir: set("NVIDIA_DEV_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/dev")),
            container_lib_dir: set("NVIDIA_CONTAINER_LIB_DIR").map(PathBuf::from),
        }
    }

    /// The configuration from the hook's environment.
    pub fn from_env() -> Config {
        Config::from_vars(|k| std::env::var(k).ok())
    }
}

/// The GPUs a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every GPU of the node.
    All,
    /// These host indices, sorted and without repeats: the container's
    /// ordering (its GPU 0 is the lowest host index).
    Indices(Vec<u32>),
}

impl Selection {
    /// Parses `all` or a comma list of indices (spaces allowed).
    pub fn parse(list: &str) -> Result<Selection, ConfigError> {
        if list.trim() == "all" {
            return Ok(Selection::All);
        }
        let mut out = Vec::new();
        for entry in list.split(',').map(str::trim) {
            let index = entry.parse::<u32>().map_err(|_| ConfigError::BadEntry {
                list: list.to_string(),
                entry: entry.to_string(),
            })?;
            out.push(index);
        }
        out.sort_unstable();
        out.dedup();
        Ok(Selection::Indices(out))
    }

    /// The host indices, checked against the `count` GPUs NVML reports.
    pub fn indices(&self, count: u32) -> Result<Vec<u32>, ConfigError> {
        match self {
            Selection::All => Ok((0..count).collect()),
            Selection::Indices(v) => {
                if let Some(&index) = v.iter().find(|i| **i >= count) {
                    return Err(ConfigError::Missing {
                        index,
                        count,
                        valid: match count {
                            0 => "none".into(),
                            n => format!("0-{}", n - 1),
                        },
                    });
                }
                Ok(v.clone())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_sorted_and_deduplicated() {
        assert_eq!(
            Selection::parse("3, 1,3").unwrap(),
            Selection::Indices(vec![1, 3])
        );
        assert_eq!(Selection::parse("all").unwrap(), Selection::All);
        assert_eq!(Selection::All.indices(3).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn bad_entries_and_missing_gpus_are_named() {
        let e = Selection::parse("0,x").unwrap_err().to_string();
        assert!(e.contains("\"x\" is not a GPU index"), "{e}");
        assert!(Selection::parse("").is_err());
        let e = Selection::parse("1,4")
            .unwrap()
            .indices(4)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("GPU 4 was allocated but NVML reports 4 GPU(s)"),
            "{e}"
        );
        let e = Selection::parse("0").unwrap().indices(0).unwrap_err();
        assert!(e.to_string().contains("(valid indices: none)"), "{e}");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_vars(|_| None);
        assert_eq!(c.nvml_library, "libnvidia-ml.so.1");
        assert_eq!(c.lib_dirs, None);
        assert_eq!(c.bin_dirs, vec![PathBuf::from("/usr/bin")]);
        assert_eq!(c.dev_dir, PathBuf::from("/dev"));
        let c = Config::from_vars(|k| match k {
            "NVIDIA_LIB_DIRS" => Some("/a::/b".into()),
            "NVIDIA_DEV_DIR" => Some("/tmp/dev".into()),
            _ => Some(String::new()),
        });
        assert_eq!(
            c.lib_dirs,
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert_eq!(c.dev_dir, PathBuf::from("/tmp/dev"));
        assert_eq!(c.nvml_library, "libnvidia-ml.so.1");
    }
}
