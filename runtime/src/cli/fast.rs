//! The per-container lifecycle commands (`create`, `start`, `state`, `kill`,
//! `delete`), parsed without clap. An OCI client runs the runtime three times
//! per container and clap builds the whole command tree each time (~0.25 ms
//! of a ~0.9 ms static start here). This parser takes only the plain forms
//! those clients use; anything else (help, `--`, bundled short flags, a
//! repeated option, a value that looks like a flag) returns `None` and clap
//! parses it, errors included. A test checks that both parsers agree.

use super::{Cli, Cmd, CreateArgs};
use std::ffi::OsString;
use std::path::PathBuf;

/// The parsed command line, or `None` to leave it to clap.
pub fn parse(args: &[OsString]) -> Option<Cli> {
    let args: Vec<&str> = args
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    let mut g = Globals::default();
    let mut sub: Option<&str> = None;
    let mut opts: Vec<(&str, Option<&str>)> = Vec::new();
    let mut positional: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        i += 1;
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a, None),
        };
        if !name.starts_with('-') {
            match sub {
                None => sub = Some(a),
                Some(_) => positional.push(a),
            }
            continue;
        }
        let takes_value = g
            .takes(name)
            .or_else(|| sub.and_then(|s| takes_value(s, name)))?;
        let value = match (takes_value, inline) {
            (false, None) => None,
            (false, Some(_)) => return None,
            (true, Some(v)) => Some(v),
            (true, None) => {
                let v = *args.get(i)?;
                i += 1;
                Some(v)
            }
        };
        if value.is_some_and(|v| v.is_empty() || v.starts_with('-')) {
            return None;
        }
        if !g.set(name, value)? {
            if opts.iter().any(|(n, _)| *n == name) {
                return None; // clap refuses a repeated option
            }
            opts.push((name, value));
        }
    }
    let cmd = command(sub?, &opts, &positional)?;
    Some(Cli {
        root: g.root.map(PathBuf::from),
        log: g.log.map(PathBuf::from),
        log_format: g.log_format.unwrap_or("text").to_string(),
        debug: g.debug,
        systemd_cgroup: g.systemd_cgroup,
        rootless: g.rootless.map(str::to_string),
        cmd,
    })
}

/// The global options, valid before or after the subcommand.
#[derive(Default)]
struct Globals<'a> {
    root: Option<&'a str>,
    log: Option<&'a str>,
    log_format: Option<&'a str>,
    rootless: Option<&'a str>,
    debug: bool,
    systemd_cgroup: bool,
}

impl<'a> Globals<'a> {
    /// Whether `name` is a global option and takes a value.
    fn takes(&self, name: &str) -> Option<bool> {
        match name {
            "--root" | "--log" | "--log-format" | "--rootless" => Some(true),
            "--debug" | "--systemd-cgroup" => Some(false),
            _ => None,
        }
    }

    /// Records a global; `Some(false)` when `name` is not one, `None` when it
    /// repeats (clap's error).
    fn set(&mut self, name: &str, value: Option<&'a str>) -> Option<bool> {
        let slot = match name {
            "--root" => &mut self.root,
            "--log" => &mut self.log,
            "--log-format" => &mut self.log_format,
            "--rootless" => &mut self.rootless,
            "--debug" | "--systemd-cgroup" => {
                let flag = if name == "--debug" {
                    &mut self.debug
                } else {
                    &mut self.systemd_cgroup
                };
                if *flag {
                    return None;
                }
                *flag = true;
                return Some(true);
            }
            _ => return Some(false),
        };
        if slot.is_some() {
            return None;
        }
        *slot = value;
        Some(true)
    }
}

/// Whether `name` is an option of subcommand `sub` and takes a value.
fn takes_value(sub: &str, name: &str) -> Option<bool> {
    match (sub, name) {
        ("create", "-b" | "--bundle" | "--pid-file" | "--console-socket" | "--preserve-fds") => {
            Some(true)
        }
        ("create", "--no-pivot" | "--no-new-keyring") => Some(false),
        ("kill", "-a" | "--all") | ("delete", "-f" | "--force") => Some(false),
        _ => None,
    }
}

fn command(sub: &str, opts: &[(&str, Option<&str>)], pos: &[&str]) -> Option<Cmd> {
    let value = |names: &[&str]| {
        opts.iter()
            .find(|(n, _)| names.contains(n))
            .and_then(|(_, v)| *v)
    };
    let flag = |names: &[&str]| opts.iter().any(|(n, _)| names.contains(n));
    // `-b` and `--bundle` are one option: giving both is a repeat.
    if flag(&["-b"]) && flag(&["--bundle"])
        || flag(&["-a"]) && flag(&["--all"])
        || flag(&["-f"]) && flag(&["--force"])
    {
        return None;
    }
    let id = || pos.first().map(|s| s.to_string());
    Some(match (sub, pos.len()) {
        ("create", 1) => Cmd::Create(CreateArgs {
            id: id()?,
            bundle: PathBuf::from(value(&["-b", "--bundle"]).unwrap_or(".")),
            pid_file: value(&["--pid-file"]).map(PathBuf::from),
            console_socket: value(&["--console-socket"]).map(PathBuf::from),
            no_pivot: flag(&["--no-pivot"]),
            no_new_keyring: flag(&["--no-new-keyring"]),
            preserve_fds: match value(&["--preserve-fds"]) {
                Some(n) => n.parse().ok()?,
                None => 0,
            },
        }),
        ("start", 1) => Cmd::Start { id: id()? },
        ("state", 1) => Cmd::State { id: id()? },
        ("kill", 1 | 2) => Cmd::Kill {
            id: id()?,
            signal: pos.get(1).map(|s| s.to_string()),
            all: flag(&["-a", "--all"]),
        },
        ("delete", 1) => Cmd::Delete {
            id: id()?,
            force: flag(&["-f", "--force"]),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn argv(line: &str) -> Vec<OsString> {
        std::iter::once("berth")
            .chain(line.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    /// Whatever the fast parser accepts, clap parses to the same value.
    fn agrees(line: &str) -> bool {
        let a = argv(line);
        match parse(&a) {
            Some(fast) => {
                let slow = Cli::try_parse_from(&a).unwrap_or_else(|e| {
                    panic!("{line:?}: fast parser accepted what clap refuses: {e}")
                });
                assert_eq!(fast, slow, "{line:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_forms_oci_clients_use_take_the_fast_path() {
        for line in [
            "create --bundle /b --pid-file /p c1",
            "--root /run/x --log /l --log-format json create --bundle /b --pid-file /p --console-socket /s c1",
            "--root=/run/x --systemd-cgroup create -b /b c1 --no-new-keyring --preserve-fds 2",
            "create c1",
            "--root /r start c1",
            "start c1 --root /r",
            "--root /r state c1",
            "kill c1",
            "kill c1 KILL",
            "--root /r kill --all c1 9",
            "kill -a c1 SIGTERM",
            "delete c1",
            "--debug delete --force c1",
            "delete -f c1 --log-format=text",
            "--rootless true state c1",
            "create --no-pivot --bundle=/b c1",
        ] {
            assert!(agrees(line), "{line:?} should take the fast path");
        }
    }

    #[test]
    fn anything_else_is_left_to_clap() {
        for line in [
            "",
            "--help",
            "--version",
            "create",
            "create c1 c2",
            "create --help c1",
            "create -bX c1",
            "create -b=/b c1",
            "create --bundle /b --bundle /c c1",
            "create -b /b --bundle /c c1",
            "--root /a --root /b state c1",
            "--debug --debug state c1",
            "create --preserve-fds x c1",
            "create --preserve-fds -1 c1",
            "create --bundle= c1",
            "create --bundle -b c1",
            "kill c1 -9",
            "kill c1 9 extra",
            "kill -af c1",
            "delete -f -f c1",
            "delete --force=yes c1",
            "delete -- c1",
            "state",
            "run c1",
            "exec c1 true",
            "features",
            "spec",
            "start --unknown c1",
            "--root",
        ] {
            assert!(!agrees(line), "{line:?} should be left to clap");
        }
    }

    #[test]
    fn non_utf8_arguments_are_left_to_clap() {
        use std::os::unix::ffi::OsStringExt;
        let a = vec![
            OsString::from("berth"),
            OsString::from("state"),
            OsString::from_vec(vec![0xff]),
        ];
        assert!(parse(&a).is_none());
    }
}
