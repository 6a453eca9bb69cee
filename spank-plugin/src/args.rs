//! Arguments after the plugin path in `plugstack.conf`, validated once at load.
//!
//! An unknown or malformed argument is an error that stops the step with one line
//! naming the argument and the fix: a typo must never become a silent default.

use std::path::PathBuf;

/// Where the `berth` runtime binary lives unless `runtime=` says otherwise.
pub const DEFAULT_RUNTIME: &str = "/usr/bin/berth";

/// Errors in plugstack.conf arguments.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ArgsError {
    /// An argument the plugin does not know.
    #[error("unknown plugstack.conf argument {0:?}: known arguments are config=PATH, runtime=PATH, sbatch_support=0|1")]
    Unknown(String),
    /// A known argument with a bad value.
    #[error("plugstack.conf argument {key}={value:?} is invalid: {fix}")]
    Invalid {
        key: &'static str,
        value: String,
        fix: &'static str,
    },
}

/// The validated plugstack.conf arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginArgs {
    /// The site configuration file (`config=`); without it the runtime uses
    /// `$BERTH_CONFIG` or `/etc/berth/berth.toml`.
    pub config: Option<PathBuf>,
    /// The berth binary used for image and container work (`runtime=`).
    pub runtime: PathBuf,
    /// Whether `sbatch`/`salloc` accept `--container-image` for the batch step.
    pub sbatch_support: bool,
}

impl Default for PluginArgs {
    fn default() -> Self {
        PluginArgs {
            config: None,
            runtime: DEFAULT_RUNTIME.into(),
            sbatch_support: true,
        }
    }
}

fn absolute(key: &'static str, value: &str) -> Result<PathBuf, ArgsError> {
    if value.starts_with('/') {
        Ok(PathBuf::from(value))
    } else {
        Err(ArgsError::Invalid {
            key,
            value: value.into(),
            fix: "give an absolute path",
        })
    }
}

impl PluginArgs {
    /// Parses `key=value` arguments as written in plugstack.conf.
    pub fn parse<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Self, ArgsError> {
        let mut parsed = PluginArgs::default();
        for arg in args {
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| ArgsError::Unknown(arg.into()))?;
            match key {
                "config" => parsed.config = Some(absolute("config", value)?),
                "runtime" => parsed.runtime = absolute("runtime", value)?,
                "sbatch_support" => {
                    parsed.sbatch_support = match value {
                        "1" | "yes" | "true" => true,
                        "0" | "no" | "false" => false,
                        _ => {
                            return Err(ArgsError::Invalid {
                                key: "sbatch_support",
                                value: value.into(),
                                fix: "use 0 or 1",
                            })
                        }
                    }
                }
                _ => return Err(ArgsError::Unknown(arg.into())),
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_arguments() {
        assert_eq!(PluginArgs::parse([]).unwrap(), PluginArgs::default());
    }

    #[test]
    fn known_arguments_are_read() {
        let a = PluginArgs::parse(["config=/e/b.toml", "runtime=/opt/berth", "sbatch_support=0"])
            .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("/e/b.toml")));
        assert_eq!(a.runtime, PathBuf::from("/opt/berth"));
        assert!(!a.sbatch_support);
    }

    #[test]
    fn unknown_and_bad_arguments_are_errors() {
        let e = PluginArgs::parse(["conifg=/x"]).unwrap_err();
        assert_eq!(e, ArgsError::Unknown("conifg=/x".into()));
        assert!(e.to_string().contains("known arguments are config=PATH"));
        assert!(matches!(
            PluginArgs::parse(["verbose"]),
            Err(ArgsError::Unknown(_))
        ));
        assert!(matches!(
            PluginArgs::parse(["config=rel/path"]),
            Err(ArgsError::Invalid { key: "config", .. })
        ));
        assert!(matches!(
            PluginArgs::parse(["sbatch_support=maybe"]),
            Err(ArgsError::Invalid { .. })
        ));
    }
}
