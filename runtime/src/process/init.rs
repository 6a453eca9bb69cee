//! The container init, running in the forked child: enter/finish the
//! namespaces, build the rootfs, run createContainer hooks, pivot, take on
//! the process identity (see [`Pending`]), report "created" and block on the
//! exec fifo until `start`, then run startContainer hooks and exec.

use super::exec::{self, Prepared};
use super::fork::{self, Forked};
use super::{io, sys, ProcessError};
use crate::config::Bundle;
use crate::namespaces::Plan;
use crate::rootfs::{self, devices, masked, mount, pivot};
use crate::state::StartWait;
use crate::sync::{Channel, Msg};
use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// What the init needs from the runtime.
pub struct Init<'a> {
    /// Container id.
    pub id: &'a str,
    /// Parsed bundle.
    pub bundle: &'a Bundle,
    /// Namespace plan.
    pub plan: &'a Plan,
    /// Our end of the sync channel.
    pub chan: Channel,
    /// O_PATH fd of the exec fifo, opened by the runtime: a user-namespaced
    /// init may not be able to walk the 0700 state directory itself.
    pub fifo: OwnedFd,
    /// Console socket, when process.terminal.
    pub console: Option<OwnedFd>,
    /// Skip joining a new session keyring.
    pub no_new_keyring: bool,
    /// Extra fds (from 3) to keep: --preserve-fds plus LISTEN_FDS.
    pub keep_fds: u32,
    /// Extra environment (LISTEN_FDS/LISTEN_PID).
    pub extra_env: Vec<String>,
    /// Namespaces were created by clone already (no joins).
    pub fast: bool,
    /// The runtime has work between mounts and pivot (prestart/createRuntime
    /// hooks, cgroup placement, reaping an intermediate): stop and wait for
    /// it. Without such work the round trip is skipped.
    pub handshake: bool,
    /// Host pid of the init when the runtime knows it up front (fast path).
    pub host_pid: i32,
    /// Make the cgroup namespace (left out of the clone or unshare) only
    /// once the runtime has put us in the container's cgroups, so that it is
    /// rooted there and not at the caller's cgroup.
    pub cgroupns_later: bool,
}

/// Run the init; never returns.
pub fn run(init: Init<'_>) -> ! {
    // SAFETY: prctl with integer arguments. If the runtime dies before
    // "created", take the half-built container down with it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // keep_fds was checked against the fds really open (create.rs).
    let mut keep: Vec<i32> = (3..3 + init.keep_fds as i32).collect();
    keep.extend(crate::log::fd());
    keep.extend([init.chan.0.as_raw_fd(), init.fifo.as_raw_fd()]);
    keep.extend(init.console.iter().map(|c| c.as_raw_fd()));
    keep.extend(init.plan.join.iter().map(|(_, fd)| fd.as_raw_fd()));
    exec::close_all_but(&keep);
    let (fifo, prepared, pending) = match setup(&init) {
        Ok(v) => v,
        Err(e) => {
            let _ = init.chan.send(&Msg::Error(e.to_string()));
            fork::exit_child(1);
        }
    };
    // Close our end so the runtime sees EOF if anything goes wrong later.
    // SAFETY: the fd is ours and not used again.
    unsafe { libc::close(init.chan.0.as_raw_fd()) };
    let mut w = match wait_for_start(&fifo) {
        Ok(w) => w,
        Err(_) => fork::exit_child(1),
    };
    let wait = pending.wait;
    let (err, released) = match after_start(&init, pending) {
        Ok(()) => {
            if wait != StartWait::Nothing {
                let _ = w.write_all(b"0");
            }
            let e = exec::exec(&prepared);
            // SAFETY: ignoring a signal; exec reset SIGPIPE, and the fifo
            // may have no reader left.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
            (e, true)
        }
        Err(e) => (e, false),
    };
    // Whether `start` is still reading: always when it waits for execve,
    // until the "0" when it reads a verdict, never when it reads nothing.
    // Otherwise the container's stderr is the only one left to tell.
    let read = match wait {
        StartWait::Exec => true,
        StartWait::Verdict => !released,
        StartWait::Nothing => false,
    };
    if !read {
        let _ = writeln!(std::io::stderr(), "berth: {err}");
    }
    let _ = w.write_all(format!("E{err}").as_bytes());
    fork::exit_child(127)
}

/// The exec fifo, held as an O_PATH fd plus a handle on the runtime's
/// /proc/self/fd taken before pivot_root, so reopening it does not depend
/// on the container mounting /proc.
pub struct Fifo {
    fd: OwnedFd,
    fd_dir: OwnedFd,
}

fn wait_for_start(fifo: &Fifo) -> Result<std::fs::File, ProcessError> {
    // Reopen the O_PATH fd for writing: this blocks until `start` opens the
    // read side, which is the whole create/start split.
    let name = std::ffi::CString::new(fifo.fd.as_raw_fd().to_string()).expect("digits");
    // SAFETY: valid dir fd and C string; the result is a fresh fd we own.
    let r = unsafe {
        libc::openat(
            fifo.fd_dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io("open exec fifo")(std::io::Error::last_os_error()));
    }
    // SAFETY: r is a fresh fd.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(r) })
}

/// What is left to do after `start`, beyond execve.
pub struct Pending {
    /// The container's seccomp filter, if any.
    filter: Option<crate::seccomp::Filter>,
    /// The process identity (ids, capabilities, no_new_privs) is still ours
    /// to take on. Normally it is taken before "created", as runc does, so
    /// that `start` releases nothing but an execve and an identity that
    /// cannot be taken (setgroups refused, an executable the user may not
    /// run) fails `create`. It waits for `start` only when something must
    /// run in between with the runtime's privileges: startContainer hooks,
    /// or a seccomp filter that has to go in before the identity switch
    /// (without no_new_privs only CAP_SYS_ADMIN may load one).
    identity: bool,
    /// What `start` reads from us.
    wait: StartWait,
}

impl Pending {
    fn new(spec: &Spec) -> Result<Pending, ProcessError> {
        let identity = identity_after_start(spec);
        Ok(Pending {
            filter: exec::seccomp_filter(spec.linux().as_ref())?,
            identity,
            wait: wait_for(spec, identity),
        })
    }
}

fn identity_after_start(spec: &Spec) -> bool {
    let nnp = spec
        .process()
        .as_ref()
        .and_then(|p| p.no_new_privileges())
        .unwrap_or(false);
    let seccomp = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
    let start_hooks = spec
        .hooks()
        .as_ref()
        .is_some_and(|h| h.start_container().as_ref().is_some_and(|v| !v.is_empty()));
    start_hooks || (seccomp && !nnp)
}

/// What `start` has to wait for with this config (see [`StartWait`]): the
/// init and `start` must agree, so both ask here.
pub fn start_wait(spec: &Spec) -> StartWait {
    wait_for(spec, identity_after_start(spec))
}

/// [`start_wait`], given [`identity_after_start`].
fn wait_for(spec: &Spec, identity_after_start: bool) -> StartWait {
    if crate::hooks::poststart(spec.hooks().as_ref()).is_some() {
        StartWait::Exec
    } else if identity_after_start {
        StartWait::Verdict
    } else {
        StartWait::Nothing
    }
}

fn after_start(init: &Init<'_>, pending: Pending) -> Result<(), ProcessError> {
    let spec = &init.bundle.spec;
    if !pending.identity {
        // Identity taken before "created"; a filter (with no_new_privs)
        // goes in last, so it constrains as little of our own work as possible.
        if let Some(f) = &pending.filter {
            f.load().map_err(|e| ProcessError::Invalid(e.to_string()))?;
        }
        return Ok(());
    }
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().clone())
    {
        let state = state_json(init, 1, "running");
        crate::hooks::run_all("startContainer", &h, &state)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
    }
    let p = spec.process().as_ref().expect("validated");
    exec::finalize_with_seccomp(p, pending.filter.as_ref(), init.keep_fds)
}

/// State JSON passed to hooks on stdin.
pub fn state_json(init: &Init<'_>, pid: i32, status: &str) -> String {
    let annotations = init.bundle.spec.annotations().clone().unwrap_or_default();
    serde_json::json!({
        "ociVersion": init.bundle.spec.version(),
        "id": init.id,
        "status": status,
        "pid": pid,
        "bundle": init.bundle.dir,
        "annotations": annotations,
    })
    .to_string()
}

fn enter_namespaces(init: &Init<'_>) -> Result<(), ProcessError> {
    let plan = init.plan;
    let nserr = |e: crate::namespaces::NamespaceError| ProcessError::Invalid(e.to_string());
    if !init.fast {
        plan.enter(true).map_err(nserr)?;
        if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
            nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(sys("create user namespace"))?;
            maps(init, nix::unistd::getpid().as_raw())?;
        }
        plan.enter(false).map_err(nserr)?;
        let mut rest = plan.new - CloneFlags::CLONE_NEWUSER;
        if init.cgroupns_later {
            rest.remove(CloneFlags::CLONE_NEWCGROUP);
        }
        nix::sched::unshare(rest).map_err(sys("create namespaces"))?;
        if plan.has(CloneFlags::CLONE_NEWPID) {
            // A new or joined pid namespace applies to children only: fork
            // once more, the grandchild (a sibling of us, via CLONE_PARENT,
            // so the runtime can wait for it) becomes the container init.
            match fork::clone(CloneFlags::CLONE_PARENT).map_err(sys("fork into pid namespace"))? {
                Forked::Parent(pid) => {
                    let _ = init.chan.send(&Msg::Pid(pid.as_raw()));
                    fork::exit_child(0);
                }
                Forked::Child => {
                    // SAFETY: prctl with integer arguments (not inherited by fork).
                    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                }
            }
        }
    } else if plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        maps(init, 0)?;
    }
    if init.cgroupns_later {
        let proto = |e: crate::Error| ProcessError::Invalid(e.to_string());
        // After a fork into a pid namespace the runtime places us as soon as
        // our parent has told it our pid (asking first could overtake that).
        if init.fast || !plan.has(CloneFlags::CLONE_NEWPID) {
            init.chan
                .send(&Msg::NeedCgroup)
                .map_err(|e| ProcessError::Invalid(e.to_string()))?;
        }
        init.chan.expect(&Msg::Go).map_err(proto)?;
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("create cgroup namespace"))?;
    }
    Ok(())
}

fn maps(init: &Init<'_>, pid: i32) -> Result<(), ProcessError> {
    init.chan
        .send(&Msg::NeedMaps(pid))
        .map_err(|e| ProcessError::Invalid(e.to_string()))?;
    init.chan
        .expect(&Msg::MapsDone)
        .map_err(|e| ProcessError::Invalid(e.to_string()))?;
    // Become root of the new namespace when 0 is mapped (as host root with
    // a mapping like 0->100000 we start as the overflow uid).
    let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
    let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
    Ok(())
}

fn setup(init: &Init<'_>) -> Result<(Fifo, Prepared, Pending), ProcessError> {
    let spec = &init.bundle.spec;
    let process = spec.process().as_ref().expect("validated");
    let linux = spec.linux().clone().unwrap_or_default();
    let me = exec::self_identity();
    enter_namespaces(init)?;
    let userns = init.plan.has(CloneFlags::CLONE_NEWUSER);
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(io("set oomScoreAdj"))?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !init.plan.new.contains(CloneFlags::CLONE_NEWUTS)
            && !init.plan.joins(CloneFlags::CLONE_NEWUTS)
        {
            return Err(ProcessError::Invalid(
                "hostname requires a uts namespace".into(),
            ));
        }
        nix::unistd::sethostname(h).map_err(sys("sethostname"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        // SAFETY: pointer and length of a live string.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(sys("setdomainname")(nix::Error::last()));
        }
    }
    if !init.no_new_keyring {
        let name = std::ffi::CString::new(format!("_ses.{}", init.id)).unwrap_or_default();
        // SAFETY: KEYCTL_JOIN_SESSION_KEYRING with a valid name. Failure
        // (no keyrings, quota) only means we share the caller's keyring.
        unsafe { libc::syscall(libc::SYS_keyctl, 1, name.as_ptr()) };
    }
    let fifo = Fifo {
        fd: init.fifo.try_clone().map_err(io("dup exec fifo"))?,
        fd_dir: nix::fcntl::open(
            "/proc/self/fd",
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open /proc/self/fd"))?,
    };
    let own_mntns = init.plan.new.contains(CloneFlags::CLONE_NEWNS);
    let ctx = rootfs::Ctx {
        rootfs: &init.bundle.rootfs,
        bundle: &init.bundle.dir,
        userns,
        own_netns: init.plan.new.contains(CloneFlags::CLONE_NEWNET),
        own_cgroupns: init.plan.new.contains(CloneFlags::CLONE_NEWCGROUP),
    };
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let root = if own_mntns {
        let root = rootfs::prepare(&ctx)?;
        mount::mount_all(&ctx, &root, spec.mounts().as_deref().unwrap_or(&[]))?;
        let mut devs: Vec<devices::Dev> = linux
            .devices()
            .iter()
            .flatten()
            .map(devices::Dev::from)
            .collect();
        for d in devices::defaults() {
            if !devs.iter().any(|x| x.path == d.path) {
                devs.push(d);
            }
        }
        devices::create_all(&ctx, &root, &devs)?;
        if process.cwd() != Path::new("/") {
            crate::resolve::mkdir_all(root.as_fd(), process.cwd(), 0o755)
                .map_err(io(format!("create cwd {}", process.cwd().display())))?;
        }
        Some(root)
    } else {
        if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) || readonly {
            let which = if init.plan.joins(CloneFlags::CLONE_NEWNS) {
                "in a joined mount namespace (linux.namespaces mount with a path)"
            } else {
                "without a mount namespace"
            };
            return Err(ProcessError::Invalid(format!(
                "not supported yet: mounts or a read-only root {which}: drop them or let berth create the mount namespace"
            )));
        }
        None
    };
    let host_pid = if init.handshake {
        init.chan
            .send(&Msg::ReadyForHooks)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
        match init
            .chan
            .expect(&Msg::HooksDone(0))
            .map_err(|e| ProcessError::Invalid(e.to_string()))?
        {
            Msg::HooksDone(p) => p,
            _ => unreachable!(),
        }
    } else {
        init.host_pid
    };
    if let Some(h) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
    {
        let state = state_json(init, host_pid, "creating");
        crate::hooks::run_all("createContainer", &h, &state)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
    }
    match &root {
        Some(root) => {
            sysctl(Some(root), &linux)?;
            masked::mask(root, linux.masked_paths().as_deref().unwrap_or(&[]))?;
            masked::readonly(
                root,
                linux.readonly_paths().as_deref().unwrap_or(&[]),
                userns,
            )?;
            pivot::pivot(root)?;
            let prop = rootfs::propagation(linux.rootfs_propagation().as_deref())?;
            let prop = prop.filter(|p| !p.contains(nix::mount::MsFlags::MS_SLAVE));
            pivot::finish(prop, readonly)?;
        }
        None => {
            pivot::chroot(&init.bundle.rootfs)?;
            sysctl(None, &linux)?;
        }
    }
    nix::unistd::chdir(process.cwd()).map_err(sys(format!("chdir {}", process.cwd().display())))?;
    nix::unistd::setsid().map_err(sys("setsid"))?;
    if process.terminal() == Some(true) {
        let sock = init.console.as_ref().ok_or_else(|| {
            ProcessError::Invalid(crate::console::ConsoleError::NoSocket.to_string())
        })?;
        let size = process.console_size().map(|b| (b.height(), b.width()));
        let slave = crate::console::setup(sock.as_raw_fd(), size)
            .map_err(|e| ProcessError::Invalid(e.to_string()))?;
        if own_mntns {
            let r: OwnedFd = std::fs::File::open("/").map_err(io("open /"))?.into();
            if let Ok(fd) = crate::resolve::touch(r.as_fd(), Path::new("/dev/console"), 0o600) {
                nix::mount::mount(
                    Some(slave.as_str()),
                    &crate::resolve::fd_path(&fd),
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys("bind /dev/console"))?;
            }
        }
    }
    let pending = Pending::new(spec)?;
    if !pending.identity {
        exec::finalize(process)?;
        exec::close_fds_from(3 + init.keep_fds);
    }
    // After the identity switch (when it came first), so the executable is
    // checked with the access rights of the user who will run it.
    let prepared = exec::prepare(process, &init.extra_env, me)?;
    // SAFETY: prctl with integer arguments. The runtime exits after
    // "created"; the container must outlive it. (If the runtime died
    // meanwhile, sending "created" fails and we exit.)
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
    init.chan
        .send(&Msg::Created)
        .map_err(|e| ProcessError::Invalid(e.to_string()))?;
    Ok((fifo, prepared, pending))
}

/// linux.sysctl, written through the container's own /proc (procfs shows
/// the namespaced values of the writer, which is already in the
/// container's namespaces) before /proc/sys is made read-only.
fn sysctl(root: Option<&OwnedFd>, linux: &oci_spec::runtime::Linux) -> Result<(), ProcessError> {
    for (k, v) in linux.sysctl().iter().flatten() {
        if k.contains("..") || k.contains('/') && k.contains('.') {
            return Err(ProcessError::Invalid(format!("invalid sysctl key {k}")));
        }
        let p = Path::new("proc/sys").join(k.replace('.', "/"));
        let f: std::fs::File = match root {
            Some(r) => {
                crate::resolve::open_in_root_flags(r.as_fd(), &p, libc::O_WRONLY).map(Into::into)
            }
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(Path::new("/").join(&p)),
        }
        .map_err(io(format!("sysctl {k}")))?;
        std::io::Write::write_all(&mut &f, v.as_bytes()).map_err(io(format!("sysctl {k}")))?;
    }
    Ok(())
}
