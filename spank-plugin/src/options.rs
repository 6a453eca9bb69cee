//! The `--container-*` options of srun, sbatch and salloc, parsed into one typed
//! request. Names follow Pyxis so users can switch without relearning; every
//! option can default from a `BERTH_CONTAINER_*` variable (the command line wins).

use std::path::PathBuf;

/// Errors in option values, shown to the user by srun.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum OptionError {
    /// An option that needs a value got none or an empty one.
    #[error("--{0} needs a value")]
    Missing(&'static str),
    /// A mount entry is malformed.
    #[error("--container-mounts entry {entry:?} is invalid: {why}: use SRC:DST[:ro|rw], comma-separated")]
    Mount { entry: String, why: &'static str },
    /// A variable name in --container-env is not a valid name.
    #[error("--container-env entry {0:?} is not a variable name: use NAME[,NAME...]")]
    EnvName(String),
    /// --container-workdir must be absolute.
    #[error("--container-workdir {0:?} must be an absolute path inside the container")]
    Workdir(String),
    /// --container-name must be a plain name.
    #[error("--container-name {0:?} is invalid: use letters, digits, '.', '_' or '-'")]
    Name(String),
}

/// Which option a callback is for; the index into [`OPTIONS`] is its SPANK `val`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Image,
    Mounts,
    Workdir,
    Name,
    Writable,
    Readonly,
    Env,
    Entrypoint,
    NoEntrypoint,
    MountHome,
    NoMountHome,
    Mpi,
    Ssh,
}

/// Whether an option takes a value (SPANK's `has_arg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// A flag.
    None,
    /// A required value.
    Required(&'static str),
    /// An optional value (`--container-mpi[=TYPE]`).
    Optional(&'static str),
}

/// One option as registered with Slurm.
#[derive(Debug)]
pub struct OptionDef {
    /// Name without the leading `--`.
    pub name: &'static str,
    /// Its value, if any.
    pub arg: Arg,
    /// Help text shown by `srun --help`.
    pub usage: &'static str,
    /// Which field it sets.
    pub key: Key,
}

/// Every option berth adds, in `--help` order.
pub const OPTIONS: &[OptionDef] = &[
    OptionDef {
        name: "container-image",
        arg: Arg::Required("[REGISTRY/]IMAGE[:TAG|@DIGEST]|PATH.sqsh"),
        usage: "run the tasks inside this container image",
        key: Key::Image,
    },
    OptionDef {
        name: "container-mounts",
        arg: Arg::Required("SRC:DST[:ro|rw],..."),
        usage: "bind-mount host paths into the container",
        key: Key::Mounts,
    },
    OptionDef {
        name: "container-workdir",
        arg: Arg::Required("PATH"),
        usage: "working directory inside the container",
        key: Key::Workdir,
    },
    OptionDef {
        name: "container-name",
        arg: Arg::Required("NAME"),
        usage: "name the container so later steps of the job reuse it",
        key: Key::Name,
    },
    OptionDef {
        name: "container-writable",
        arg: Arg::None,
        usage: "make the container's root writable (changes are discarded)",
        key: Key::Writable,
    },
    OptionDef {
        name: "container-readonly",
        arg: Arg::None,
        usage: "keep the container's root read-only (default)",
        key: Key::Readonly,
    },
    OptionDef {
        name: "container-env",
        arg: Arg::Required("NAME,..."),
        usage: "job variables that override the image's values",
        key: Key::Env,
    },
    OptionDef {
        name: "container-entrypoint",
        arg: Arg::None,
        usage: "run the image's entrypoint before the command",
        key: Key::Entrypoint,
    },
    OptionDef {
        name: "no-container-entrypoint",
        arg: Arg::None,
        usage: "do not run the image's entrypoint (default)",
        key: Key::NoEntrypoint,
    },
    OptionDef {
        name: "container-mount-home",
        arg: Arg::None,
        usage: "bind-mount the user's home directory (default)",
        key: Key::MountHome,
    },
    OptionDef {
        name: "no-container-mount-home",
        arg: Arg::None,
        usage: "do not bind-mount the user's home directory",
        key: Key::NoMountHome,
    },
    OptionDef {
        name: "container-mpi",
        arg: Arg::Optional("TYPE"),
        usage: "replace the image's MPI with the host's (hooks.d)",
        key: Key::Mpi,
    },
    OptionDef {
        name: "container-ssh",
        arg: Arg::None,
        usage: "start an SSH server in each node's container",
        key: Key::Ssh,
    },
];

impl OptionDef {
    /// The environment variable giving this option's default:
    /// `container-mount-home` -> `BERTH_CONTAINER_MOUNT_HOME`. The `no-` forms
    /// share their positive form's variable (set it to 0 to negate).
    pub fn env_var(&self) -> Option<String> {
        if self.name.starts_with("no-") || self.key == Key::Readonly {
            return None;
        }
        Some(format!(
            "BERTH_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        ))
    }
}

/// A bind mount the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

/// What the user asked for, before site policy is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The image; no image means the step runs outside any container.
    pub image: Option<String>,
    /// User bind mounts.
    pub mounts: Vec<Mount>,
    /// Working directory inside the container.
    pub workdir: Option<PathBuf>,
    /// Named container reused by later steps.
    pub name: Option<String>,
    /// Writable root (`Some(false)` when --container-readonly was given).
    pub writable: Option<bool>,
    /// Job variables that win over the image's.
    pub env: Vec<String>,
    /// Run the image's entrypoint.
    pub entrypoint: Option<bool>,
    /// Mount the user's home.
    pub mount_home: Option<bool>,
    /// MPI hook requested, with its type (`"default"` when none given).
    pub mpi: Option<String>,
    /// SSH hook requested.
    pub ssh: bool,
}

fn value(def: &OptionDef, arg: Option<&str>) -> Result<String, OptionError> {
    match arg.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v.to_string()),
        _ => Err(OptionError::Missing(def.name)),
    }
}

fn parse_mounts(list: &str) -> Result<Vec<Mount>, OptionError> {
    list.split(',')
        .filter(|e| !e.is_empty())
        .map(parse_mount)
        .collect()
}

fn parse_mount(entry: &str) -> Result<Mount, OptionError> {
    let bad = |why| OptionError::Mount {
        entry: entry.into(),
        why,
    };
    let parts: Vec<&str> = entry.split(':').collect();
    let (src, dst, flags) = match parts.as_slice() {
        [s] => (*s, *s, None),
        [s, d] => (*s, *d, None),
        [s, d, f] => (*s, *d, Some(*f)),
        _ => return Err(bad("too many ':'")),
    };
    if !src.starts_with('/') || !dst.starts_with('/') {
        return Err(bad("source and destination must be absolute paths"));
    }
    if dst.split('/').any(|c| c == "..") {
        return Err(bad("the destination must not contain '..'"));
    }
    let readonly = match flags {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(_) => return Err(bad("unknown flag")),
    };
    Ok(Mount {
        source: src.into(),
        destination: dst.into(),
        readonly,
    })
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn bool_value(def: &OptionDef, v: &str) -> Result<bool, OptionError> {
    match v {
        "1" | "yes" | "true" => Ok(true),
        "0" | "no" | "false" => Ok(false),
        _ => Err(OptionError::Missing(def.name)),
    }
}

impl Request {
    /// Applies one option as given on the command line (`arg` is its value).
    pub fn apply(&mut self, def: &OptionDef, arg: Option<&str>) -> Result<(), OptionError> {
        match def.key {
            Key::Image => self.image = Some(value(def, arg)?),
            Key::Mounts => self.mounts.extend(parse_mounts(&value(def, arg)?)?),
            Key::Workdir => {
                let w = value(def, arg)?;
                if !w.starts_with('/') {
                    return Err(OptionError::Workdir(w));
                }
                self.workdir = Some(w.into());
            }
            Key::Name => {
                let n = value(def, arg)?;
                if !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    || n.starts_with('.')
                {
                    return Err(OptionError::Name(n));
                }
                self.name = Some(n);
            }
            Key::Writable => self.writable = Some(true),
            Key::Readonly => self.writable = Some(false),
            Key::Env => {
                for name in value(def, arg)?.split(',').filter(|n| !n.is_empty()) {
                    if !is_var_name(name) {
                        return Err(OptionError::EnvName(name.into()));
                    }
                    self.env.push(name.into());
                }
            }
            Key::Entrypoint => self.entrypoint = Some(true),
            Key::NoEntrypoint => self.entrypoint = Some(false),
            Key::MountHome => self.mount_home = Some(true),
            Key::NoMountHome => self.mount_home = Some(false),
            Key::Mpi => {
                self.mpi = Some(
                    arg.filter(|a| !a.is_empty())
                        .unwrap_or("default")
                        .to_string(),
                )
            }
            Key::Ssh => self.ssh = true,
        }
        Ok(())
    }

    /// Fills options the command line left unset from `BERTH_CONTAINER_*`
    /// variables looked up with `getenv`. Flags take 0/1 values.
    pub fn apply_env_defaults(
        &mut self,
        getenv: impl Fn(&str) -> Option<String>,
    ) -> Result<(), OptionError> {
        let mut defaults = Request::default();
        for def in OPTIONS {
            let Some(v) = def.env_var().and_then(|var| getenv(&var)) else {
                continue;
            };
            match def.arg {
                Arg::None if !bool_value(def, &v)? => {
                    // A 0 on a flag selects its negative form where there is one.
                    let negative = OPTIONS
                        .iter()
                        .find(|o| o.name.strip_prefix("no-") == Some(def.name));
                    match (def.key, negative) {
                        (Key::Writable, _) => defaults.writable = Some(false),
                        (_, Some(neg)) => defaults.apply(neg, None)?,
                        _ => {}
                    }
                }
                Arg::None => defaults.apply(def, None)?,
                _ => defaults.apply(def, Some(&v))?,
            }
        }
        self.merge_defaults(defaults);
        Ok(())
    }

    fn merge_defaults(&mut self, d: Request) {
        self.image = self.image.take().or(d.image);
        if self.mounts.is_empty() {
            self.mounts = d.mounts;
        }
        self.workdir = self.workdir.take().or(d.workdir);
        self.name = self.name.take().or(d.name);
        self.writable = self.writable.or(d.writable);
        if self.env.is_empty() {
            self.env = d.env;
        }
        self.entrypoint = self.entrypoint.or(d.entrypoint);
        self.mount_home = self.mount_home.or(d.mount_home);
        self.mpi = self.mpi.take().or(d.mpi);
        self.ssh |= d.ssh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str) -> &'static OptionDef {
        OPTIONS.iter().find(|o| o.name == name).unwrap()
    }

    #[test]
    fn parses_every_option() {
        let mut r = Request::default();
        r.apply(
            def("container-image"),
            Some("127.0.0.1:15000/berth-test/busybox:latest"),
        )
        .unwrap();
        r.apply(
            def("container-mounts"),
            Some("/scratch:/scratch,/etc/hosts:/etc/hosts:ro"),
        )
        .unwrap();
        r.apply(def("container-workdir"), Some("/scratch")).unwrap();
        r.apply(def("container-name"), Some("build-1")).unwrap();
        r.apply(def("container-writable"), None).unwrap();
        r.apply(def("container-env"), Some("PATH,MY_VAR")).unwrap();
        r.apply(def("no-container-mount-home"), None).unwrap();
        r.apply(def("container-mpi"), None).unwrap();
        r.apply(def("container-ssh"), None).unwrap();
        assert_eq!(
            r.image.as_deref(),
            Some("127.0.0.1:15000/berth-test/busybox:latest")
        );
        assert_eq!(
            r.mounts[1],
            Mount {
                source: "/etc/hosts".into(),
                destination: "/etc/hosts".into(),
                readonly: true
            }
        );
        assert_eq!(r.workdir, Some(PathBuf::from("/scratch")));
        assert_eq!(r.writable, Some(true));
        assert_eq!(r.env, vec!["PATH", "MY_VAR"]);
        assert_eq!(r.mount_home, Some(false));
        assert_eq!(r.mpi.as_deref(), Some("default"));
        assert!(r.ssh);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let mut r = Request::default();
        let e = r
            .apply(def("container-mounts"), Some("relative:/x"))
            .unwrap_err();
        assert!(e.to_string().starts_with("--container-mounts entry \"relative:/x\" is invalid: source and destination must be absolute"));
        assert!(r.apply(def("container-mounts"), Some("/a:/b:rx")).is_err());
        assert!(r
            .apply(def("container-mounts"), Some("/a:/b/../etc"))
            .is_err());
        assert!(r
            .apply(def("container-mounts"), Some("/a:/b:ro:x"))
            .is_err());
        assert_eq!(
            r.apply(def("container-image"), Some(" ")),
            Err(OptionError::Missing("container-image"))
        );
        assert_eq!(
            r.apply(def("container-env"), Some("1BAD")),
            Err(OptionError::EnvName("1BAD".into()))
        );
        assert!(matches!(
            r.apply(def("container-workdir"), Some("rel")),
            Err(OptionError::Workdir(_))
        ));
        assert!(matches!(
            r.apply(def("container-name"), Some("../x")),
            Err(OptionError::Name(_))
        ));
    }

    #[test]
    fn environment_defaults_lose_to_the_command_line() {
        let env = |k: &str| match k {
            "BERTH_CONTAINER_IMAGE" => Some("img:env".to_string()),
            "BERTH_CONTAINER_WORKDIR" => Some("/env".to_string()),
            "BERTH_CONTAINER_MOUNT_HOME" => Some("0".to_string()),
            "BERTH_CONTAINER_WRITABLE" => Some("1".to_string()),
            _ => None,
        };
        let mut r = Request::default();
        r.apply(def("container-image"), Some("img:cli")).unwrap();
        r.apply_env_defaults(env).unwrap();
        assert_eq!(r.image.as_deref(), Some("img:cli"));
        assert_eq!(r.workdir, Some(PathBuf::from("/env")));
        assert_eq!(r.mount_home, Some(false));
        assert_eq!(r.writable, Some(true));
    }

    #[test]
    fn every_option_has_a_variable_or_a_positive_form() {
        for o in OPTIONS {
            assert!(
                o.env_var().is_some() || o.name.starts_with("no-") || o.key == Key::Readonly,
                "{}",
                o.name
            );
        }
        assert_eq!(
            def("container-mount-home").env_var().as_deref(),
            Some("BERTH_CONTAINER_MOUNT_HOME")
        );
    }
}
