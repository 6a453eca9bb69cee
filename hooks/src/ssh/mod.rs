//! The SSH hook: with annotation `com.berth.ssh=true`, the container gets an
//! SSH server (the host's dropbear, run as the container user on port
//! `SSH_PORT`, default 15263, public-key logins only) and an `ssh` command
//! that reaches the same server in the step's other containers with the
//! user's berth keys (`berth ssh-keygen`). At createRuntime the hook sets
//! everything up and starts dropbear; at poststop it stops it and removes
//! what it made in the bundle, which may be used again.
//!
//! Hook env: `SSH_PORT`, `DROPBEAR` (default /usr/sbin/dropbear), `DBCLIENT`
//! (default /usr/bin/dbclient). See docs/hooks-ssh.md.

pub mod daemon;
pub mod keys;
pub mod tools;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::ContainerState;

use crate::inject::{Access, Rootfs};
use crate::Container;

/// The default port of the containers' SSH servers.
pub const DEFAULT_PORT: u16 = 15263;

/// Errors of the SSH hook.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("{0}")]
    Config(String),
    #[error("the container runs as root: --ssh needs the job's own user")]
    Root,
    #[error(transparent)]
    Hook(#[from] crate::HookError),
    #[error(transparent)]
    Inject(#[from] crate::inject::InjectError),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("cannot inject the SSH tools: {0}")]
    Tools(#[from] tools::ToolError),
    #[error(transparent)]
    Daemon(#[from] daemon::DaemonError),
    #[error("cannot {what} {}: {source}", path.display())]
    State {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The hook's settings, from its env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    pub dropbear: PathBuf,
    pub dbclient: PathBuf,
}

impl Settings {
    /// Reads `SSH_PORT`, `DROPBEAR` and `DBCLIENT`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, SshError> {
        let port = match env("SSH_PORT") {
            None => DEFAULT_PORT,
            Some(p) => p.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                SshError::Config(format!(
                    "SSH_PORT={p:?} in the hook's env is not a TCP port"
                ))
            })?,
        };
        let path = |name: &str, default: &str| PathBuf::from(env(name).unwrap_or(default.into()));
        Ok(Settings {
            port,
            dropbear: path("DROPBEAR", "/usr/sbin/dropbear"),
            dbclient: path("DBCLIENT", "/usr/bin/dbclient"),
        })
    }
}

/// The hook: starts dropbear at createRuntime, stops it at poststop.
pub fn run(c: &Container) -> Result<(), SshError> {
    if !c.flag("com.berth.ssh") {
        return Ok(());
    }
    let state = c.bundle().join("ssh");
    if *c.state.status() == ContainerState::Stopped {
        return stop(&state);
    }
    start(c, &state, &Settings::from_env(|k| std::env::var(k).ok())?)
}

/// Stops dropbear and removes everything [`start`] made in `state`, so a
/// bundle used again starts clean (`start` refuses an existing `state`).
/// Whatever a failed start did not make is fine.
fn stop(state: &Path) -> Result<(), SshError> {
    daemon::stop(state)?;
    keys::remove_dot_ssh(state)?;
    remove_if_present(state).map_err(|source| SshError::State {
        what: "remove",
        path: state.to_path_buf(),
        source,
    })
}

/// Removes the file or empty directory `path`; one already gone is fine.
fn remove_if_present(path: &Path) -> std::io::Result<()> {
    let removed = match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Where the user key is in the container.
fn user_key() -> PathBuf {
    tools::at("keys").join(berth::cli::ssh_keygen::USER_KEY)
}

fn start(c: &Container, state: &Path, s: &Settings) -> Result<(), SshError> {
    let (uid, gid) = c.user();
    if uid == 0 {
        return Err(SshError::Root);
    }
    let groups = c
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.user().additional_gids().clone())
        .unwrap_or_default();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(state)
        .map_err(|source| SshError::State {
            what: "create",
            path: state.to_path_buf(),
            source,
        })?;
    c.enter_mount_ns()?;
    // Opened in the container's namespace (mount(2) binds only from the
    // caller's own), where the host's paths are still visible before
    // pivot_root; with the user's filesystem ids.
    let keys = keys::UserKeys::open(uid, gid)?;
    let root = Rootfs::open(&c.rootfs)?;
    let account = keys::account(&root, uid)?;
    keys::mount_dot_ssh(&root, state, &account, (uid, gid), &keys.authorized)?;
    root.bind(&keys.fd_path(), &tools::at("keys"), Access::ReadOnly)?;
    let tools = tools::install(
        &root,
        &[("dropbear", &s.dropbear), ("dbclient", &s.dbclient)],
    )?;
    write_scripts(&root, &tools, s.port)?;
    let port = s.port.to_string();
    let host_key = tools::at("keys").join(berth::cli::ssh_keygen::HOST_KEY);
    let args: Vec<String> = [
        "-F", "-E", // foreground, log to stderr (the log file)
        "-s", "-g", "-w", // keys only, never root
        "-j", "-k", // no port forwarding
        "-e", // sessions get the container's environment ...
        "-c", // ... through the session script
        SESSION, "-p", &port, "-r",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([
        host_key.display().to_string(),
        // A path the user cannot write: dropbear skips its pid file.
        "-P".into(),
        tools::at("dropbear.pid").display().to_string(),
    ])
    .collect();
    let mut env: Vec<(String, String)> = c
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default()
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect();
    // dropbear resets PATH for sessions; the session script restores it.
    if let Some(path) = c.process_env("PATH") {
        env.push(("BERTH_SSH_PATH".into(), path.into()));
    }
    daemon::start(&daemon::Launch {
        rootfs: c.rootfs.clone(),
        uid,
        gid,
        groups,
        argv: tools.argv("dropbear", &args),
        env,
        init_pid: c.pid()?,
        port: s.port,
        state: state.to_path_buf(),
    })?;
    Ok(())
}

/// The forced command of every session (dropbear `-c`).
const SESSION: &str = "/opt/berth/ssh/bin/session";

/// Writes the session script and the `ssh` client wrapper.
fn write_scripts(root: &Rootfs, tools: &tools::Installed, port: u16) -> Result<(), SshError> {
    let session = "#!/bin/sh\n\
        # berth: dropbear resets PATH; restore the container's, then run what\n\
        # the client asked for, or a login shell.\n\
        if [ -n \"$BERTH_SSH_PATH\" ]; then PATH=$BERTH_SSH_PATH; export PATH; fi\n\
        unset BERTH_SSH_PATH\n\
        if [ -n \"$SSH_ORIGINAL_COMMAND\" ]; then exec \"$SHELL\" -c \"$SSH_ORIGINAL_COMMAND\"; fi\n\
        exec \"$SHELL\" -l\n";
    root.write(Path::new(SESSION), session.as_bytes(), 0o755)?;
    let client: Vec<String> = tools
        .argv(
            "dbclient",
            &[
                "-y".into(),
                "-y".into(),
                "-p".into(),
                port.to_string(),
                "-i".into(),
                user_key().display().to_string(),
            ],
        )
        .iter()
        .map(|a| format!("'{a}'"))
        .collect();
    let wrapper = format!(
        "#!/bin/sh\n\
        # berth: ssh to the containers of this step (dropbear's client, the\n\
        # user's berth key, port {port}). Host keys are not checked: every\n\
        # peer serves this user's own host key. -x (no X11) is dropped, as\n\
        # dbclient has no X11 forwarding to turn off.\n\
        for a do shift; [ \"$a\" = -x ] || set -- \"$@\" \"$a\"; done\n\
        exec {} \"$@\"\n",
        client.join(" ")
    );
    root.write(Path::new("/usr/bin/ssh"), wrapper.as_bytes(), 0o755)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_and_reject_bad_ports() {
        let none = |_: &str| None;
        let s = Settings::from_env(none).unwrap();
        assert_eq!(s.port, DEFAULT_PORT);
        assert_eq!(s.dropbear, Path::new("/usr/sbin/dropbear"));
        let bad = |k: &str| (k == "SSH_PORT").then(|| "70000".to_string());
        let err = Settings::from_env(bad).unwrap_err().to_string();
        assert!(err.contains("SSH_PORT=\"70000\""), "{err}");
    }

    #[test]
    fn stop_removes_what_start_made_and_tolerates_its_absence() {
        let bundle = tempfile::tempdir().unwrap();
        let state = bundle.path().join("ssh");
        // A start that failed before making anything.
        stop(&state).unwrap();
        // Everything a start makes (dropbear itself already gone).
        std::fs::create_dir(&state).unwrap();
        let me = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        keys::make_dot_ssh(&state, me, b"ssh-ed25519 AAAA u\n").unwrap();
        std::fs::write(state.join(daemon::LOG_FILE), "dropbear log\n").unwrap();
        std::fs::write(state.join(daemon::PID_FILE), "1 1\n").unwrap();
        stop(&state).unwrap();
        assert!(!state.exists());
        // Part of it, as when dropbear never started.
        std::fs::create_dir(&state).unwrap();
        keys::make_dot_ssh(&state, me, b"").unwrap();
        stop(&state).unwrap();
        assert_eq!(std::fs::read_dir(bundle.path()).unwrap().count(), 0);
        // Something start did not make is kept, and named.
        std::fs::create_dir_all(state.join("other")).unwrap();
        let err = stop(&state).unwrap_err().to_string();
        assert!(
            err.contains("cannot remove") && err.contains("ssh"),
            "{err}"
        );
        assert!(state.join("other").exists());
    }
}
