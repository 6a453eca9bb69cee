//! The last steps before execve, shared by the container init and
//! `berth exec`: find the executable, take on the configured identity
//! (rlimits, groups, uid, capabilities, no_new_privs, umask) and exec.

use super::{io, sys, ProcessError};
use oci_spec::runtime::Process;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Everything execve needs, computed before the identity switch.
#[derive(Debug)]
pub struct Prepared {
    /// Resolved executable path (inside the container).
    pub path: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// envp.
    pub envp: Vec<CString>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstr(s: &str) -> Result<CString, ProcessError> {
    CString::new(s).map_err(|_| ProcessError::Invalid(format!("NUL byte in {s:?}")))
}

/// Identity of our own binary, taken before pivot_root.
pub fn self_identity() -> Option<(u64, u64)> {
    std::fs::metadata("/proc/self/exe")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Resolve args[0] against PATH, check it is executable, that the
/// interpreters and loaders it needs are there, and that none of them is
/// the berth binary: that is how CVE-2019-5736 made runc execute itself
/// inside a container and then get overwritten through /proc/<pid>/exe.
pub fn prepare(
    p: &Process,
    extra_env: &[String],
    me: Option<(u64, u64)>,
) -> Result<Prepared, ProcessError> {
    let args = p.args().clone().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| ProcessError::Invalid("process.args is empty".into()))?;
    let mut env: Vec<String> = p.env().clone().unwrap_or_default();
    env.extend(extra_env.iter().cloned());
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(p.user().uid())));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let path = if arg0.contains('/') {
        PathBuf::from(arg0)
    } else {
        path_var
            .split(':')
            .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(arg0))
            .find(|c| is_executable(c))
            .ok_or_else(|| ProcessError::NotFound(arg0.clone()))?
    };
    if !is_executable(&path) {
        return Err(ProcessError::NotFound(arg0.clone()));
    }
    check_chain(&path, me)?;
    Ok(Prepared {
        path: CString::new(path.as_os_str().as_bytes())
            .map_err(|_| ProcessError::Invalid("NUL in path".into()))?,
        argv: args.iter().map(|a| cstr(a)).collect::<Result<_, _>>()?,
        envp: env.iter().map(|e| cstr(e)).collect::<Result<_, _>>()?,
    })
}

fn is_executable(p: &Path) -> bool {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: valid C string.
    std::fs::metadata(p).is_ok_and(|m| m.is_file())
        && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
}

/// Follows what execve will load after `path` (a script's interpreter, a
/// dynamic executable's loader, theirs in turn, as deep as the kernel goes):
/// each must be there and executable, and none may be the berth binary.
fn check_chain(path: &Path, me: Option<(u64, u64)>) -> Result<(), ProcessError> {
    let mut path = path.to_path_buf();
    for _ in 0..5 {
        let m = std::fs::metadata(&path).map_err(io(format!("stat {}", path.display())))?;
        if me == Some((m.dev(), m.ino())) {
            return Err(ProcessError::SelfExec(path.display().to_string()));
        }
        // An executable we may not read (mode 0711) still runs; there is
        // nothing to follow in it that we could see.
        let Ok(f) = std::fs::File::open(&path) else {
            return Ok(());
        };
        let Some(next) = super::interp::of(&f) else {
            return Ok(());
        };
        if !is_executable(next.path()) {
            let program = path.display().to_string();
            let interp = next.path().display().to_string();
            return Err(match next {
                super::interp::Interp::Script(_) => ProcessError::NoInterpreter { program, interp },
                super::interp::Interp::Loader(_) => ProcessError::NoLoader { program, interp },
            });
        }
        path = next.path().to_path_buf();
    }
    Ok(())
}

/// Home directory of `uid` from the container's /etc/passwd, "/" if none.
fn home_of(uid: u32) -> String {
    let data = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    data.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .next()
        .unwrap_or_else(|| "/".into())
}

/// Take on the process identity. Order matters: rlimits and the bounding
/// set need privileges we are about to drop; KEEPCAPS carries the
/// permitted set across setuid so capset can then pick from it.
pub fn finalize(p: &Process) -> Result<(), ProcessError> {
    if let Some(l) = p.rlimits() {
        crate::rlimits::apply(l).map_err(|e| ProcessError::Invalid(e.to_string()))?;
    }
    if let Some(prof) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        if Path::new("/sys/module/apparmor").exists() {
            std::fs::write("/proc/self/attr/apparmor/exec", format!("exec {prof}"))
                .map_err(io("apply apparmor profile"))?;
        } else {
            crate::log::warn(&format!(
                "apparmor profile {prof} not applied: apparmor is not enabled on this host"
            ));
        }
    }
    if p.selinux_label().as_deref().is_some_and(|s| !s.is_empty())
        && !Path::new("/sys/fs/selinux/enforce").exists()
    {
        crate::log::warn("selinuxLabel not applied: selinux is not enabled on this host");
    }
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    if let Some(c) = p.capabilities() {
        crate::caps::drop_bounding(c).map_err(|e| ProcessError::Invalid(e.to_string()))?;
    }
    let user = p.user();
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    if let Err(e) = nix::unistd::setgroups(&gids) {
        // Only now look at why (the file is in the container's fresh /proc):
        // a user namespace with a single-id mapping denies setgroups, which
        // only matters when there are groups to set.
        let denied =
            std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        match (denied, gids.is_empty()) {
            (true, true) => {}
            (true, false) => {
                return Err(ProcessError::Invalid(
                    "additionalGids need setgroups, which this user namespace denies (single-id mapping); map a range with newgidmap".into(),
                ))
            }
            (false, _) => return Err(sys("setgroups")(e)),
        }
    }
    let gid = nix::unistd::Gid::from_raw(user.gid());
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(sys(format!("setgid {gid}")))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(sys(format!("setuid {uid}")))?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) };
    if let Some(c) = p.capabilities() {
        crate::caps::apply(c).map_err(|e| ProcessError::Invalid(e.to_string()))?;
    }
    if p.no_new_privileges() == Some(true) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(sys("set no_new_privs")(nix::Error::last()));
        }
    }
    if let Some(m) = user.umask() {
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(m & 0o777) };
    }
    Ok(())
}

/// Compile the container's seccomp profile, if any.
pub fn seccomp_filter(
    linux: Option<&oci_spec::runtime::Linux>,
) -> Result<Option<crate::seccomp::Filter>, ProcessError> {
    match linux.and_then(|l| l.seccomp().as_ref()) {
        Some(s) => crate::seccomp::compile(s)
            .map(Some)
            .map_err(|e| ProcessError::Invalid(e.to_string())),
        None => Ok(None),
    }
}

/// [`finalize`] plus the seccomp filter at the right moment: without
/// no_new_privs the kernel only lets CAP_SYS_ADMIN load a filter, so it goes
/// in before the identity switch (as runc does); with no_new_privs it goes
/// in last, so it constrains as little of our own setup as possible.
pub fn finalize_with_seccomp(
    p: &Process,
    filter: Option<&crate::seccomp::Filter>,
    keep_fds: u32,
) -> Result<(), ProcessError> {
    let nnp = p.no_new_privileges() == Some(true);
    let load =
        |f: &crate::seccomp::Filter| f.load().map_err(|e| ProcessError::Invalid(e.to_string()));
    if let (Some(f), false) = (filter, nnp) {
        load(f)?;
    }
    finalize(p)?;
    close_fds_from(3 + keep_fds);
    if let (Some(f), true) = (filter, nnp) {
        load(f)?;
    }
    Ok(())
}

/// Closes every fd from 3 up except `keep`, right after the init is forked.
///
/// The init inherits whatever the runtime had open, its caller's pipes
/// included, and a created container's init may wait a long time before it
/// execs (a Slurm step's init never does): holding a caller's pipe would keep
/// the caller waiting for an end of file that never comes.
pub fn close_all_but(keep: &[i32]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|f| **f >= 3)
        .map(|f| *f as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut next = 3u32;
    for k in keep.iter().copied().chain(std::iter::once(u32::MAX)) {
        if k > next {
            // SAFETY: closes fd numbers only; the kept ones lie outside the range.
            let r = unsafe { libc::syscall(libc::SYS_close_range, next, k - 1, 0u32) };
            if r != 0 {
                // Kernels before 5.9, or a seccomp filter refusing close_range.
                return close_listed_but(&keep);
            }
        }
        next = k.saturating_add(1);
    }
}

/// `close_all_but` without close_range: closes the fds /proc/self/fd lists.
fn close_listed_but(keep: &[u32]) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    // Collect first: closing while the directory is open would close its own fd.
    let fds: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd >= 3 && !keep.contains(fd)) {
        // SAFETY: closing an fd number we do not keep (the directory's own fd is
        // already closed by now and gets EBADF, which is harmless).
        unsafe { libc::close(fd as i32) };
    }
}

/// Mark every fd from `first` up close-on-exec, so nothing of the host
/// (state dir, sync socket, bundle files) survives into the container
/// (CVE-2024-21626 class), while stdio and preserved fds do.
pub fn close_fds_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: close_range only changes fd flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Old kernels: walk /proc/self/fd.
        if let Ok(d) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = d
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|fd| *fd >= first as i32) {
                // SAFETY: setting FD_CLOEXEC on an fd number.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// execve; returns only on failure.
pub fn exec(p: &Prepared) -> ProcessError {
    // Rust's runtime sets SIGPIPE to SIG_IGN in berth, and an ignored signal
    // stays ignored across execve: without this the container process would
    // get EPIPE instead of dying on a closed pipe (`yes | head` misbehaves).
    // SAFETY: resetting one disposition to the default; no handler involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let e = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    ProcessError::Sys {
        what: format!("exec {}", p.path.to_string_lossy()),
        source: e,
    }
}
