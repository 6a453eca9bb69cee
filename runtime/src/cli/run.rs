//! Dispatch of parsed arguments to the library.

use super::{Cli, Cmd, CreateArgs, ExecArgs};
use crate::container::{self, exec::ExecOpts, CreateOpts};
use crate::state::State;
use std::path::Path;

fn opts(root: &Path, a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        root: root.into(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

/// Execute the command; returns the process exit code.
pub fn run(cli: Cli) -> crate::Result<i32> {
    let root = cli.root.clone().unwrap_or_else(crate::state::default_root);
    match cli.cmd {
        Cmd::Create(a) => {
            container::create::create(&opts(&root, &a))?;
            Ok(0)
        }
        Cmd::Start { id } => {
            container::start::start(&root, &id)?;
            Ok(0)
        }
        Cmd::State { id } => {
            let st = State::load(&root, &id)?;
            let out =
                serde_json::to_string_pretty(&st.oci(st.status(&root))).expect("state serializes");
            crate::outln!("{out}");
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = container::kill::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            container::kill::kill(&root, &id, sig, all)?;
            Ok(0)
        }
        Cmd::Delete { id, force } => {
            container::delete::delete(&root, &id, force)?;
            Ok(0)
        }
        Cmd::Run(a) => run_container(&root, &a.create, a.detach, a.keep),
        Cmd::Exec(a) => {
            container::exec::reexec_sealed()?;
            let o = exec_opts(&a)?;
            container::exec::exec(&root, &a.id, o)
        }
        Cmd::Spec { bundle } => {
            // Rootless from the euid, or forced with the global --rootless=true.
            let euid = nix::unistd::geteuid();
            let rootless = !euid.is_root() || cli.rootless.as_deref() == Some("true");
            let ids = rootless.then(|| (euid.as_raw(), nix::unistd::getegid().as_raw()));
            super::spec::write(&bundle, ids)
                .map_err(|e| container::ContainerError::Other(e.to_string()))?;
            Ok(0)
        }
        Cmd::Features => {
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&super::features::json()).expect("features serialize")
            );
            Ok(0)
        }
    }
}

fn run_container(root: &Path, a: &CreateArgs, detach: bool, keep: bool) -> crate::Result<i32> {
    let created = container::create::create(&opts(root, a))?;
    if let Err(e) = container::start::start(root, &a.id) {
        let _ = container::delete::delete(root, &a.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let pid = nix::unistd::Pid::from_raw(created.pid);
    let code = crate::process::wait_exit_code(pid);
    if !keep {
        container::delete::delete(root, &a.id, true)?;
    }
    Ok(code)
}

fn exec_opts(a: &ExecArgs) -> crate::Result<ExecOpts> {
    let process =
        match &a.process {
            Some(p) => crate::config::load_process(p)?,
            None => {
                if a.command.is_empty() {
                    return Err(container::ContainerError::Other(
                        "exec needs --process or a command".into(),
                    )
                    .into());
                }
                let st = State::load(&a.id_root(), &a.id).ok();
                let base = st
                    .and_then(|s| crate::config::load(&s.bundle).ok())
                    .and_then(|b| b.spec.process().clone())
                    .unwrap_or_default();
                let mut p = base;
                p.set_args(Some(a.command.clone()));
                p.set_terminal(Some(a.tty));
                if let Some(c) = &a.cwd {
                    p.set_cwd(c.clone());
                }
                let mut env = p.env().clone().unwrap_or_default();
                env.extend(a.env.iter().cloned());
                p.set_env(Some(env));
                if let Some(u) = &a.user {
                    let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
                    let mut user = p.user().clone();
                    user.set_uid(uid.parse().map_err(|_| {
                        container::ContainerError::Other(format!("bad --user {u}"))
                    })?);
                    user.set_gid(gid.parse().map_err(|_| {
                        container::ContainerError::Other(format!("bad --user {u}"))
                    })?);
                    p.set_user(user);
                }
                if a.no_new_privs {
                    p.set_no_new_privileges(Some(true));
                }
                if let Some(ap) = &a.apparmor {
                    p.set_apparmor_profile(Some(ap.clone()));
                }
                p
            }
        };
    Ok(ExecOpts {
        process: Some(process),
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    })
}

impl ExecArgs {
    fn id_root(&self) -> std::path::PathBuf {
        ROOT.with(|r| r.borrow().clone())
    }
}

thread_local! {
    /// The state root of this invocation (set by main before dispatch).
    pub static ROOT: std::cell::RefCell<std::path::PathBuf> = std::cell::RefCell::new(std::path::PathBuf::new());
}
