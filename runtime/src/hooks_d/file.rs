//! One hooks.d file: OCI hooks 1.0.0 JSON (`version`, `hook`, `when`,
//! `stages`), parsed strictly so that a typo in a field name fails loudly
//! instead of silently changing which containers get the hook.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::HooksDError;

/// The only format version berth reads (Podman's and Sarus's current one).
pub const VERSION: &str = "1.0.0";

/// When a hook runs in the container's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Deprecated by the OCI spec, still honoured.
    Prestart,
    /// After mounts, before pivot_root, in the runtime's namespaces.
    CreateRuntime,
    /// After mounts, before pivot_root, in the container's mount namespace.
    CreateContainer,
    /// In the container, before the process runs.
    StartContainer,
    /// After the process started.
    Poststart,
    /// After the container is deleted.
    Poststop,
}

impl Stage {
    /// Every stage with its JSON name.
    pub const ALL: [(&'static str, Stage); 6] = [
        ("prestart", Stage::Prestart),
        ("createRuntime", Stage::CreateRuntime),
        ("createContainer", Stage::CreateContainer),
        ("startContainer", Stage::StartContainer),
        ("poststart", Stage::Poststart),
        ("poststop", Stage::Poststop),
    ];

    /// The stage's JSON name.
    pub fn name(self) -> &'static str {
        Stage::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("", |(n, _)| n)
    }
}

/// The hook to run (the OCI `Hook` object).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookCommand {
    /// Absolute path of the binary.
    pub path: PathBuf,
    /// argv, including argv[0].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// `NAME=VALUE` environment (the hook gets nothing else).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Seconds before the hook is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

impl HookCommand {
    /// The OCI spec's form.
    pub fn to_oci(&self) -> oci_spec::runtime::Hook {
        let mut h = oci_spec::runtime::Hook::default();
        h.set_path(self.path.clone());
        h.set_args((!self.args.is_empty()).then(|| self.args.clone()));
        h.set_env((!self.env.is_empty()).then(|| self.env.clone()));
        h.set_timeout(self.timeout);
        h
    }
}

/// The `when` object as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawWhen {
    always: Option<bool>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    commands: Vec<String>,
    has_bind_mounts: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: String,
    hook: HookCommand,
    when: Option<RawWhen>,
    stages: Vec<String>,
}

/// The `when` conditions, compiled.
#[derive(Debug, Clone, Default)]
pub struct When {
    /// `always`: `Some(true)` matches, `Some(false)` never does.
    pub always: Option<bool>,
    /// `annotations`: (key regex, value regex), every entry must match.
    pub annotations: Vec<(Regex, Regex)>,
    /// `commands`: regexes on `process.args[0]`; one must match.
    pub commands: Vec<Regex>,
    /// `hasBindMounts`.
    pub has_bind_mounts: Option<bool>,
}

/// One validated hooks.d file.
#[derive(Debug, Clone)]
pub struct HookFile {
    /// Where it was read.
    pub file: PathBuf,
    /// What to run.
    pub hook: HookCommand,
    /// When to select it.
    pub when: When,
    /// The stages it runs at.
    pub stages: Vec<Stage>,
}

/// Reads and validates one file.
pub fn parse_file(path: &Path) -> Result<HookFile, HooksDError> {
    let text = std::fs::read(path).map_err(|source| HooksDError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, &text)
}

/// Validates `text`, read from `path` (named in every error).
pub fn parse(path: &Path, text: &[u8]) -> Result<HookFile, HooksDError> {
    let raw: RawFile = serde_json::from_slice(text).map_err(|e| HooksDError::Parse {
        path: path.into(),
        message: e.to_string(),
    })?;
    let bad = |field: &str, reason: String| HooksDError::Invalid {
        path: path.into(),
        field: field.into(),
        reason,
    };
    if raw.version != VERSION {
        return Err(bad(
            "version",
            format!("{:?} is not supported: use \"{VERSION}\"", raw.version),
        ));
    }
    check_command(&raw.hook, &bad)?;
    let when = raw.when.unwrap_or_default();
    if when.always.is_none()
        && when.annotations.is_empty()
        && when.commands.is_empty()
        && when.has_bind_mounts.is_none()
    {
        return Err(bad(
            "when",
            "needs at least one condition (always, annotations, commands or hasBindMounts)".into(),
        ));
    }
    let compile = |field: String, pattern: &str| {
        Regex::new(pattern).map_err(|e| {
            let first = e
                .to_string()
                .lines()
                .last()
                .unwrap_or("")
                .trim()
                .to_string();
            bad(
                &field,
                format!("bad regular expression {pattern:?}: {first}"),
            )
        })
    };
    let mut annotations = Vec::new();
    for (k, v) in &when.annotations {
        annotations.push((
            compile(format!("when.annotations key {k:?}"), k)?,
            compile(format!("when.annotations[{k:?}]"), v)?,
        ));
    }
    let commands = when
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| compile(format!("when.commands[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    if raw.stages.is_empty() {
        return Err(bad("stages", "needs at least one stage".into()));
    }
    let stages = raw
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Stage::ALL
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, st)| *st)
                .ok_or_else(|| {
                    let names: Vec<&str> = Stage::ALL.iter().map(|(n, _)| *n).collect();
                    bad(
                        &format!("stages[{i}]"),
                        format!("unknown stage {s:?}: use one of {}", names.join(", ")),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HookFile {
        file: path.into(),
        hook: raw.hook,
        when: When {
            always: when.always,
            annotations,
            commands,
            has_bind_mounts: when.has_bind_mounts,
        },
        stages,
    })
}

/// `hook.path` must be an absolute path to an executable file; `env` entries
/// `NAME=VALUE`; `timeout` positive (the OCI spec's rules).
fn check_command(
    h: &HookCommand,
    bad: &impl Fn(&str, String) -> HooksDError,
) -> Result<(), HooksDError> {
    if !h.path.is_absolute() {
        return Err(bad(
            "hook.path",
            format!("{} is not an absolute path", h.path.display()),
        ));
    }
    match std::fs::metadata(&h.path) {
        Err(e) => {
            return Err(bad(
                "hook.path",
                format!("{}: {e}: install the hook binary", h.path.display()),
            ))
        }
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
            return Err(bad(
                "hook.path",
                format!("{} is not an executable file", h.path.display()),
            ))
        }
        Ok(_) => {}
    }
    for (i, kv) in h.env.iter().enumerate() {
        if !kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()) {
            return Err(bad(
                &format!("hook.env[{i}]"),
                format!("{kv:?} is not NAME=VALUE"),
            ));
        }
    }
    if h.timeout.is_some_and(|t| t <= 0) {
        return Err(bad(
            "hook.timeout",
            "must be a positive number of seconds".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(Path::new("/etc/hooks.d/10-x.json"), text.as_bytes())
            .unwrap_err()
            .to_string()
    }

    fn file(hook: &str, when: &str, stages: &str) -> String {
        format!(r#"{{"version":"1.0.0","hook":{hook},"when":{when},"stages":{stages}}}"#)
    }

    const SH: &str = r#"{"path":"/bin/sh"}"#;

    #[test]
    fn a_complete_file_parses() {
        let text = r#"{"version":"1.0.0",
            "hook":{"path":"/bin/sh","args":["sh","-c","true"],"env":["A=1"],"timeout":5},
            "when":{"annotations":{"^com\\.berth\\.mpi$":"^true$"},"commands":["python"],"hasBindMounts":true},
            "stages":["createRuntime","poststop"]}"#;
        let f = parse(Path::new("/x.json"), text.as_bytes()).unwrap();
        assert_eq!(f.stages, [Stage::CreateRuntime, Stage::Poststop]);
        assert_eq!(f.when.annotations.len(), 1);
        assert_eq!(f.when.commands.len(), 1);
        let oci = f.hook.to_oci();
        assert_eq!(oci.timeout(), Some(5));
        assert_eq!(oci.env().clone().unwrap(), ["A=1"]);
    }

    #[test]
    fn every_error_names_the_file_and_the_field() {
        let always = r#"{"always":true}"#;
        let cr = r#"["createRuntime"]"#;
        let cases = [
            ("{\"version\":\n  \"1.0.0\",,}".to_string(), "line 2 column"),
            (
                file(SH, always, cr).replace("1.0.0", "2.0"),
                "version: \"2.0\" is not supported",
            ),
            (
                file(r#"{"args":["x"]}"#, always, cr),
                "missing field `path`",
            ),
            (
                file(r#"{"path":"sh"}"#, always, cr),
                "hook.path: sh is not an absolute",
            ),
            (
                file(r#"{"path":"/nonexistent/hook"}"#, always, cr),
                "hook.path: /nonexistent/hook: No such file",
            ),
            (
                file(r#"{"path":"/etc/passwd"}"#, always, cr),
                "hook.path: /etc/passwd is not an executable file",
            ),
            (
                file(r#"{"path":"/bin/sh","env":["NOVALUE"]}"#, always, cr),
                "hook.env[0]",
            ),
            (
                file(r#"{"path":"/bin/sh","timeout":0}"#, always, cr),
                "hook.timeout",
            ),
            (
                file(SH, always, r#"["prestop"]"#),
                "stages[0]: unknown stage \"prestop\"",
            ),
            (file(SH, always, "[]"), "stages: needs at least one"),
            (file(SH, "{}", cr), "when: needs at least one condition"),
            (
                r#"{"version":"1.0.0","hook":{"path":"/bin/sh"},"stages":["poststop"]}"#.into(),
                "when: needs at least one condition",
            ),
            (
                file(SH, r#"{"commands":["ok","(unclosed"]}"#, cr),
                "when.commands[1]: bad regular expression",
            ),
            (
                file(SH, r#"{"annotations":{"k":"*"}}"#, cr),
                "when.annotations[\"k\"]: bad regular expression",
            ),
            (
                file(SH, r#"{"annotation":{"k":"v"}}"#, cr),
                "unknown field `annotation`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(
                e.starts_with("hooks.d file /etc/hooks.d/10-x.json: ") && e.contains(want),
                "want {want:?} in: {e}"
            );
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
