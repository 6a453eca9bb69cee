//! `exec`: start another process in a running container. The process
//! joins the init's namespaces through pinned /proc/<pid>/ns fds, its
//! cgroup, and takes on the identity given by `--process` (or the CLI).
//!
//! A container may already be hostile by the time we exec into it, so the
//! runtime first re-executes itself from a sealed memfd: /proc/<pid>/exe of
//! anything we start then points at an immutable copy, never at the host
//! binary (CVE-2019-5736).

use super::ContainerError;
use crate::process::exec as pexec;
use crate::process::fork::{self, Forked};
use crate::state::{State, Status};
use crate::sync::{self, Msg};
use nix::sched::CloneFlags;
use oci_spec::runtime::Process;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Options of `exec`.
#[derive(Debug, Default)]
pub struct ExecOpts {
    /// The process to run.
    pub process: Option<Process>,
    /// Return after the process started.
    pub detach: bool,
    /// Where to write its pid.
    pub pid_file: Option<PathBuf>,
    /// Console socket for a terminal.
    pub console_socket: Option<PathBuf>,
    /// Extra fds to keep.
    pub preserve_fds: u32,
}

const NS: [(&str, CloneFlags); 7] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// Namespaces of `pid` that differ from ours, opened now so a pid reuse
/// cannot swap them under us.
fn target_namespaces(pid: i32) -> Result<Vec<(CloneFlags, OwnedFd)>, ContainerError> {
    let mut out = Vec::new();
    for (name, flag) in NS {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let (Ok(a), Ok(b)) = (
            std::fs::metadata(&theirs),
            std::fs::metadata(format!("/proc/self/ns/{name}")),
        ) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        let f = std::fs::File::open(&theirs).map_err(|source| ContainerError::Io {
            what: format!("open {theirs}"),
            source,
        })?;
        out.push((flag, f.into()));
    }
    Ok(out)
}

/// Run a process in container `id`; returns its exit code (0 when detached).
pub fn exec(root: &Path, id: &str, o: ExecOpts) -> crate::Result<i32> {
    let st = State::load(root, id)?;
    // As runc: a created (not yet started) container takes processes too; a
    // Slurm step's container is never started.
    if !matches!(st.status(root), Status::Running | Status::Created) {
        return Err(ContainerError::NotRunning(id.into()).into());
    }
    let process = o
        .process
        .ok_or_else(|| ContainerError::Other("exec needs --process or a command".into()))?;
    let ns = target_namespaces(st.pid)?;
    // Exec'd processes get the container's seccomp profile, like its init.
    let filter = container_seccomp(&st.bundle)?;
    let console = match (&o.console_socket, process.terminal()) {
        (Some(p), Some(true)) => Some(crate::console::connect(p)?),
        (None, Some(true)) => return Err(crate::console::ConsoleError::NoSocket.into()),
        _ => None,
    };
    let preserve_fds = super::checked_preserved_fds(o.preserve_fds)?;
    let (parent_end, child_end) = sync::pair()?;
    let me = pexec::self_identity();
    match fork::clone(CloneFlags::empty()).map_err(|source| ContainerError::Sys {
        what: "fork".into(),
        source,
    })? {
        Forked::Child => fork::in_child(|| {
            drop(parent_end);
            let err = child(
                &st,
                &ns,
                &process,
                &child_end,
                console,
                preserve_fds,
                me,
                filter.as_ref(),
            );
            let _ = child_end.send(&Msg::Error(err.to_string()));
            fork::exit_child(127)
        }),
        Forked::Parent(_) => {}
    }
    drop(child_end);
    let pid = match parent_end.expect(&Msg::Pid(0))? {
        Msg::Pid(p) => p,
        _ => unreachable!(),
    };
    crate::cgroups::add(&st.cgroups, pid)?;
    parent_end.send(&Msg::Go)?;
    // EOF without an Error means execve succeeded (the socket is CLOEXEC).
    match parent_end.recv() {
        Ok(Msg::Error(e)) => {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            return Err(crate::process::ProcessError::Child(e).into());
        }
        Err(crate::sync::SyncError::Eof) => {}
        Ok(m) => return Err(ContainerError::Other(format!("unexpected message {m:?}")).into()),
        Err(e) => return Err(e.into()),
    }
    if let Some(p) = &o.pid_file {
        super::write_pid_file(p, pid)?;
    }
    if o.detach {
        return Ok(0);
    }
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(source) => {
                return Err(ContainerError::Sys {
                    what: "wait".into(),
                    source,
                }
                .into())
            }
        }
    }
}

/// Child side: join, fork into the pid namespace, set up, exec.
// Everything here is borrowed from `exec`'s frame right before the fork;
// a struct would only rename the same eight values.
#[allow(clippy::too_many_arguments)]
fn child(
    st: &State,
    ns: &[(CloneFlags, OwnedFd)],
    process: &Process,
    chan: &sync::Channel,
    console: Option<OwnedFd>,
    preserve_fds: u32,
    me: Option<(u64, u64)>,
    filter: Option<&crate::seccomp::Filter>,
) -> crate::Error {
    let run = || -> crate::Result<std::convert::Infallible> {
        let sys = |what: &str| {
            let what = what.to_string();
            move |source| ContainerError::Sys { what, source }
        };
        // User namespace first: it grants the capabilities over the others.
        for (flag, fd) in ns
            .iter()
            .filter(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
            .chain(ns.iter().filter(|(f, _)| *f != CloneFlags::CLONE_NEWUSER))
        {
            // SAFETY: namespace fd we opened.
            if unsafe { libc::setns(fd.as_raw_fd(), flag.bits()) } != 0 {
                return Err(sys("setns")(nix::Error::last()).into());
            }
        }
        // CLONE_PARENT makes the exec'd process our caller's child, so a
        // non-detached exec can wait for it and conmon can reap it.
        match fork::clone(CloneFlags::CLONE_PARENT).map_err(sys("fork into the container"))? {
            Forked::Parent(p) => {
                let _ = chan.send(&Msg::Pid(p.as_raw()));
                fork::exit_child(0);
            }
            Forked::Child => {}
        }
        chan.expect(&Msg::Go)?;
        nix::unistd::chdir(process.cwd()).map_err(sys("chdir"))?;
        let prepared = pexec::prepare(process, &[], me)?;
        nix::unistd::setsid().map_err(sys("setsid"))?;
        if let Some(sock) = &console {
            crate::console::setup(
                sock.as_raw_fd(),
                process.console_size().map(|b| (b.height(), b.width())),
            )?;
        }
        drop(console);
        pexec::finalize_with_seccomp(process, filter, preserve_fds)?;
        Err(pexec::exec(&prepared).into())
    };
    let _ = st;
    match run() {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

fn container_seccomp(bundle: &Path) -> crate::Result<Option<crate::seccomp::Filter>> {
    let p = bundle.join("config.json");
    let data = std::fs::read(&p).map_err(|source| ContainerError::Io {
        what: format!("read {} for its seccomp profile", p.display()),
        source,
    })?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&data).map_err(|source| crate::config::ConfigError::Parse {
            path: p.clone(),
            source,
        })?;
    Ok(pexec::seccomp_filter(spec.linux().as_ref())?)
}

/// Re-exec the current binary from a sealed memfd unless already done
/// (marked by BERTH_SEALED in the environment).
pub fn reexec_sealed() -> Result<(), ContainerError> {
    if std::env::var_os("BERTH_SEALED").is_some() {
        std::env::remove_var("BERTH_SEALED");
        return Ok(());
    }
    let io = |what: &str| {
        let what = what.to_string();
        move |source| ContainerError::Io { what, source }
    };
    let mut src = std::fs::File::open("/proc/self/exe").map_err(io("open /proc/self/exe"))?;
    let name = c"berth";
    // SAFETY: valid name; flags are constants.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: fresh fd.
    let mut mem = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::copy(&mut src, &mut mem).map_err(io("copy berth into memfd"))?;
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: fcntl on our fd.
    if unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io("seal memfd")(std::io::Error::last_os_error()));
    }
    let args: Vec<std::ffi::CString> = crate::args::os()
        .iter()
        .map(|a| {
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str()))
                .unwrap_or_default()
        })
        .collect();
    let mut env: Vec<std::ffi::CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut s = k.into_encoded_bytes();
            s.push(b'=');
            s.extend(v.into_encoded_bytes());
            std::ffi::CString::new(s).unwrap_or_default()
        })
        .collect();
    env.push(c"BERTH_SEALED=1".into());
    let e = nix::unistd::fexecve(&mem, &args, &env).unwrap_err();
    Err(ContainerError::Sys {
        what: "re-exec from sealed memfd".into(),
        source: e,
    })
}
