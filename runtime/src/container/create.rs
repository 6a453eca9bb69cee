//! `create`: validate, claim the id, fork the init into its namespaces,
//! drive the sync protocol (maps, cgroup, prestart/createRuntime hooks),
//! and record the state (status "creating" until the init reports, so the
//! runtime writes it while the init builds the rootfs). Any failure tears
//! everything down: the init is killed (its mount namespace and mounts die
//! with it), cgroups, the pid file and the state directory are removed.

use super::{ContainerError, CreateOpts};
use crate::config::{self, Bundle};
use crate::namespaces::Plan;
use crate::process::fork::{self, Forked};
use crate::process::init::{self, Init};
use crate::state::{self, State};
use crate::sync::{self, Msg};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::PathBuf;

/// A created container, as `run` needs it.
pub struct Created {
    /// Init pid.
    pub pid: i32,
    /// Persisted state.
    pub state: State,
}

/// Undo a half-made container unless disarmed.
struct Cleanup {
    root: PathBuf,
    id: String,
    pid: Option<i32>,
    /// The pid file, once written.
    pid_file: Option<PathBuf>,
    cgroups: crate::cgroups::Placement,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(p) = self.pid {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(p), None);
        }
        if let Err(e) = crate::cgroups::remove(&self.cgroups.created, &self.cgroups.parents) {
            crate::log::warn(&e.to_string());
        }
        if let Some(p) = &self.pid_file {
            let _ = std::fs::remove_file(p);
        }
        let _ = State::remove(&self.root, &self.id);
    }
}

/// Create the container; returns once it is "created".
pub fn create(o: &CreateOpts) -> crate::Result<Created> {
    let bundle = config::load(&o.bundle)?;
    let rootless = !nix::unistd::geteuid().is_root();
    let plan = Plan::from_spec(&bundle.spec, rootless)?;
    let console = match (
        &o.console_socket,
        bundle.spec.process().as_ref().and_then(|p| p.terminal()),
    ) {
        (Some(p), Some(true)) => Some(crate::console::connect(p)?),
        (None, Some(true)) => return Err(crate::console::ConsoleError::NoSocket.into()),
        _ => None,
    };
    let dir = state::claim(&o.root, &o.id)?;
    let mut cleanup = Cleanup {
        root: o.root.clone(),
        id: o.id.clone(),
        pid: None,
        pid_file: None,
        cgroups: Default::default(),
        armed: true,
    };
    let fifo = dir.join("exec.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(
        |source| ContainerError::Sys {
            what: "create exec fifo".into(),
            source,
        },
    )?;
    // mkfifo applies the umask; a user-namespaced init reopens the fifo as
    // "other", so it needs the world-writable bit (the 0700 dir guards it).
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622)).map_err(
        |source| ContainerError::Io {
            what: "chmod exec fifo".into(),
            source,
        },
    )?;
    let fifo_fd: std::os::fd::OwnedFd = nix::fcntl::open(
        &fifo,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|source| ContainerError::Sys {
        what: "open exec fifo".into(),
        source,
    })?;
    cleanup.cgroups = crate::cgroups::setup(&bundle.spec, &o.id, rootless)?;
    let (listen_fds, extra_env) = listen_fds();
    let keep_fds = o
        .preserve_fds
        .checked_add(listen_fds)
        .ok_or_else(|| ContainerError::Other("too many preserved fds".into()))
        .and_then(super::checked_preserved_fds)?;
    let (parent_end, child_end) = sync::pair()?;
    let fast = plan.join.is_empty();
    // A cgroup namespace is rooted at the cgroup its maker is in: the init
    // makes it only once we have put it in the container's cgroups.
    let cgroupns_later =
        plan.new.contains(CloneFlags::CLONE_NEWCGROUP) && !cleanup.cgroups.dirs.is_empty();
    let mut flags = if fast { plan.new } else { CloneFlags::empty() };
    if cgroupns_later {
        flags.remove(CloneFlags::CLONE_NEWCGROUP);
    }
    let hooks = bundle.spec.hooks().as_ref();
    let runtime_hooks = hooks.is_some_and(|h| {
        h.prestart().is_some() || h.create_runtime().is_some() || h.create_container().is_some()
    });
    let handshake = !fast || runtime_hooks || !cleanup.cgroups.dirs.is_empty();
    // Without hooks or cgroups there is nothing to do between mounts and
    // pivot_root, so the init does not stop for a round trip.
    let child = fork::clone(flags).map_err(|source| ContainerError::Sys {
        what: "clone container init".into(),
        source,
    })?;
    let mut pid = match child {
        Forked::Child => fork::in_child(|| {
            drop(parent_end);
            init::run(Init {
                id: &o.id,
                bundle: &bundle,
                plan: &plan,
                chan: child_end,
                fifo: fifo_fd,
                console,
                no_new_keyring: o.no_new_keyring,
                keep_fds,
                extra_env,
                fast,
                handshake,
                cgroupns_later,
                // Only read by createContainer hooks, which imply the handshake.
                host_pid: 0,
            })
        }),
        Forked::Parent(p) => p.as_raw(),
    };
    drop(child_end);
    drop(fifo_fd);
    drop(console);
    cleanup.pid = Some(pid);
    // With the init's pid final (no intermediate process), record the state
    // and pid file while the init builds the rootfs, marked "creating" until
    // it reports; otherwise once it has.
    let mut early = None;
    if fast {
        let marker = state::creating_path(&o.root, &o.id);
        std::fs::File::create(&marker).map_err(|source| ContainerError::Io {
            what: format!("create {}", marker.display()),
            source,
        })?;
        early = Some((marker, record(o, &bundle, &plan, &mut cleanup, pid)?));
    }
    let mut intermediate = None;
    tracing::debug!(id = %o.id, pid, "init forked");
    loop {
        match parent_end.recv()? {
            Msg::NeedMaps(p) => {
                let target = if p == 0 { pid } else { p };
                let linux = bundle.spec.linux().as_ref();
                let u = linux
                    .and_then(|l| l.uid_mappings().clone())
                    .unwrap_or_default();
                let g = linux
                    .and_then(|l| l.gid_mappings().clone())
                    .unwrap_or_default();
                crate::userns::write_maps(target, &u, &g)?;
                parent_end.send(&Msg::MapsDone)?;
            }
            Msg::Pid(p) => {
                if early.is_some() {
                    return Err(ContainerError::Other(
                        "init reported a new pid after the state was recorded".into(),
                    )
                    .into());
                }
                intermediate = Some(pid);
                pid = p;
                cleanup.pid = Some(pid);
                if cgroupns_later {
                    place(&cleanup.cgroups.dirs, pid, &parent_end)?;
                }
            }
            Msg::NeedCgroup => place(&cleanup.cgroups.dirs, pid, &parent_end)?,
            Msg::ReadyForHooks => {
                if let Some(i) = intermediate.take() {
                    let _ = nix::sys::wait::waitpid(Pid::from_raw(i), None);
                }
                // With cgroupns_later the init waited for `place` before it
                // got this far.
                if !cgroupns_later {
                    crate::cgroups::add(&cleanup.cgroups.dirs, pid)?;
                }
                run_runtime_hooks(&bundle, &o.id, pid)?;
                parent_end.send(&Msg::HooksDone(pid))?;
            }
            Msg::Created => break,
            Msg::Error(e) => {
                let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
                cleanup.pid = None;
                return Err(crate::process::ProcessError::Child(e).into());
            }
            m => {
                return Err(
                    ContainerError::Other(format!("unexpected message {m:?} from init")).into(),
                )
            }
        }
    }
    let st = match early {
        Some((marker, st)) => {
            std::fs::remove_file(&marker).map_err(|source| ContainerError::Io {
                what: format!("remove {}", marker.display()),
                source,
            })?;
            st
        }
        None => record(o, &bundle, &plan, &mut cleanup, pid)?,
    };
    cleanup.armed = false;
    Ok(Created { pid, state: st })
}

/// Puts the init in its cgroups and lets it make its cgroup namespace.
fn place(dirs: &[PathBuf], pid: i32, chan: &sync::Channel) -> crate::Result<()> {
    crate::cgroups::add(dirs, pid)?;
    Ok(chan.send(&Msg::Go)?)
}

/// Saves the container's state and writes the pid file.
fn record(
    o: &CreateOpts,
    bundle: &Bundle,
    plan: &Plan,
    cleanup: &mut Cleanup,
    pid: i32,
) -> crate::Result<State> {
    let start_time = state::proc_stat(pid).map(|s| s.1).unwrap_or(0);
    let spec = &bundle.spec;
    let st = State {
        oci_version: spec.version().clone(),
        id: o.id.clone(),
        pid,
        start_time,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        created: crate::log::timestamp(),
        owner: nix::unistd::geteuid().as_raw(),
        hooks: spec.hooks().clone(),
        cgroups: cleanup.cgroups.dirs.clone(),
        cgroups_created: cleanup.cgroups.created.clone(),
        cgroup_parents_created: cleanup.cgroups.parents.clone(),
        own_pidns: plan.has(CloneFlags::CLONE_NEWPID),
        own_mntns: plan.creates(CloneFlags::CLONE_NEWNS),
        start_wait: crate::process::init::start_wait(spec),
    };
    st.save(&o.root)?;
    if let Some(p) = &o.pid_file {
        super::write_pid_file(p, pid)?;
        cleanup.pid_file = Some(p.clone());
    }
    Ok(st)
}

/// prestart (deprecated but still honoured) then createRuntime, in the
/// runtime's namespaces, after the container's namespaces exist.
fn run_runtime_hooks(bundle: &Bundle, id: &str, pid: i32) -> crate::Result<()> {
    let Some(hooks) = bundle.spec.hooks() else {
        return Ok(());
    };
    if hooks.prestart().is_none() && hooks.create_runtime().is_none() {
        return Ok(());
    }
    let state = serde_json::json!({
        "ociVersion": bundle.spec.version(),
        "id": id,
        "status": "creating",
        "pid": pid,
        "bundle": bundle.dir,
        "annotations": bundle.spec.annotations().clone().unwrap_or_default(),
    })
    .to_string();
    if let Some(h) = hooks.prestart() {
        crate::hooks::run_all("prestart", h, &state)?;
    }
    if let Some(h) = hooks.create_runtime() {
        crate::hooks::run_all("createRuntime", h, &state)?;
    }
    Ok(())
}

/// Socket activation: pass LISTEN_FDS fds through, as runc does, but only
/// when LISTEN_PID names this process (sd_listen_fds(3)): variables inherited
/// from a socket-activated ancestor do not describe our fds.
fn listen_fds() -> (u32, Vec<String>) {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        == Some(std::process::id());
    match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n > 0 && ours => (n, vec![format!("LISTEN_FDS={n}"), "LISTEN_PID=1".into()]),
        _ => (0, Vec::new()),
    }
}
