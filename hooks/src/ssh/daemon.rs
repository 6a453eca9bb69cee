//! Starting and stopping the container's dropbear.
//!
//! The hook forks a keeper, which starts dropbear (chrooted into the rootfs,
//! as the container user, no privileges) and then waits for the container's
//! init to exit: at that point, whatever path led there (a failed create, a
//! delete, a killed step), it kills every process left in the container's
//! mount namespace (dropbear and its sessions) and exits. The hook itself
//! returns once dropbear listens on its port, after recording its pid (with
//! its start time, so a reused pid is never killed) in the bundle; the
//! poststop stage kills it from there.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth::state::{proc_stat, process_alive};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The pid file, in the bundle's ssh directory.
pub const PID_FILE: &str = "dropbear.pid";
/// The pid file while it is written, renamed to [`PID_FILE`] when whole.
const PID_TMP: &str = "dropbear.pid.tmp";
/// dropbear's log (its stderr), in the bundle's ssh directory.
pub const LOG_FILE: &str = "dropbear.log";
/// How long dropbear may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting or stopping dropbear.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("dropbear could not start: {0}")]
    Spawn(String),
    #[error("dropbear exited at start ({log}): is port {port} (SSH_PORT) free on this node?")]
    Exited { port: u16, log: String },
    #[error("dropbear did not listen on IPv4 port {port} within {secs}s: is port {port} (SSH_PORT) free on this node?")]
    NotListening { port: u16, secs: u64 },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// What to start and as whom.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The rootfs (host path, seen from the container's mount namespace).
    pub rootfs: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The command, container paths.
    pub argv: Vec<String>,
    /// Its whole environment.
    pub env: Vec<(String, String)>,
    /// The container's init.
    pub init_pid: i32,
    pub port: u16,
    /// The bundle's ssh directory (pid file, log).
    pub state: PathBuf,
}

/// Starts dropbear; returns once it listens on `l.port`.
pub fn start(l: &Launch) -> Result<(), DaemonError> {
    let init = berth::container::pidfd(l.init_pid)
        .ok_or_else(|| DaemonError::Spawn(format!("the container init {} is gone", l.init_pid)))?;
    let ns = std::fs::metadata(format!("/proc/{}/ns/mnt", l.init_pid))
        .map(|m| (m.dev(), m.ino()))
        .map_err(io("read the container's mount namespace"))?;
    let log_path = l.state.join(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(io(format!("open {}", log_path.display())))?;
    // Close-on-exec: dropbear must not hold the write end, or we would
    // wait for its exit instead of its pid.
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| io("make a pipe")(e.into()))?;
    let (r, w) = (std::fs::File::from(r), std::fs::File::from(w));
    // SAFETY: the hook is single-threaded; the child only runs the keeper
    // and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| io("fork")(e.into()))? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            keeper(l, init, ns, log, w)
        }
        nix::unistd::ForkResult::Parent { .. } => {}
    }
    drop(w);
    drop(init);
    let mut answer = String::new();
    let _ = (&r).read_to_string(&mut answer);
    let pid: i32 = answer
        .parse()
        .map_err(|_| DaemonError::Spawn(answer.trim().to_string()))?;
    let ready = wait_listening(pid, l.port, &log_path);
    let recorded = ready.and_then(|()| write_pid_file(&l.state, pid));
    if recorded.is_err() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    recorded
}

fn wait_listening(pid: i32, port: u16, log: &Path) -> Result<(), DaemonError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if listening(pid, port) {
            return Ok(());
        }
        let alive = proc_stat(pid).is_some_and(|(s, _)| s != b'Z' && s != b'X');
        // dropbear's start-up lines (a few), passed on as they are.
        let start_log = || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let all = lines[lines.len().saturating_sub(4)..].join("; ");
            if all.is_empty() {
                "no output".into()
            } else {
                all
            }
        };
        if !alive {
            return Err(DaemonError::Exited {
                port,
                log: start_log(),
            });
        }
        if Instant::now() >= deadline {
            return Err(DaemonError::NotListening {
                port,
                secs: START_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `pid` holds an IPv4 TCP socket listening on `port` (from the
/// kernel's /proc tables: socket inodes of its fds against the listening
/// sockets of its network namespace). IPv4 is required: dropbear keeps
/// running when only its IPv6 socket could bind, and node names resolve to
/// IPv4 addresses, which would then reach whoever holds the IPv4 port.
pub fn listening(pid: i32, port: u16) -> bool {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let port = format!("{port:04X}");
    std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .any(|f| {
            f.len() > 9
                && f[3] == "0A"
                && f[1].rsplit(':').next() == Some(port.as_str())
                && inodes.iter().any(|i| i == f[9])
        })
}

fn write_pid_file(state: &Path, pid: i32) -> Result<(), DaemonError> {
    let start = proc_stat(pid).map(|s| s.1).unwrap_or(0);
    let tmp = state.join(PID_TMP);
    let dst = state.join(PID_FILE);
    std::fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| std::fs::rename(&tmp, &dst))
        .map_err(io(format!("write {}", dst.display())))
}

/// Kills the dropbear recorded in `state` (if still running) and removes the
/// files [`start`] made there (pid file, log). A missing file or a dropbear
/// already gone is fine.
pub fn stop(state: &Path) -> Result<(), DaemonError> {
    kill_recorded(&state.join(PID_FILE))?;
    for name in [PID_FILE, PID_TMP, LOG_FILE] {
        let path = state.join(name);
        super::remove_if_present(&path).map_err(io(format!("remove {}", path.display())))?;
    }
    Ok(())
}

/// Kills the dropbear the pid `file` names, if it is still that process.
fn kill_recorded(file: &Path) -> Result<(), DaemonError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("read {}", file.display()))(e)),
    };
    let mut f = text.split_whitespace();
    // A pid of 0 or below would make kill(2) signal a whole process group.
    let pid = f
        .next()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|p| *p > 0);
    let start = f.next().and_then(|s| s.parse::<u64>().ok());
    if let (Some(pid), Some(start)) = (pid, start) {
        if process_alive(pid, start) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            berth::container::wait_exit(pid, start, Duration::from_secs(5));
        }
    }
    Ok(())
}

/// The keeper process: starts dropbear, reports its pid (or why it could not
/// start) on `report`, then outlives it until the container's init exits.
fn keeper(
    l: &Launch,
    init: OwnedFd,
    ns: (u64, u64),
    log: std::fs::File,
    report: std::fs::File,
) -> ! {
    // Away from the hook's session and from the pipe the runtime reads to EOF.
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
    }
    let _ = nix::unistd::dup2_stderr(&log);
    // Nothing else the hook inherited (its caller's pipes, which someone may
    // read to EOF) may stay open in dropbear and its sessions.
    close_fds_but(&[init.as_raw_fd(), log.as_raw_fd(), report.as_raw_fd()]);
    let mut report = report;
    let child = spawn(l, &log);
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = write!(report, "{e}");
            std::process::exit(1)
        }
    };
    let _ = write!(report, "{}", child.id());
    drop(report);
    // Wait for the init to exit, whatever dropbear does meanwhile.
    let mut p = libc::pollfd {
        fd: init.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut p, 1, -1) } {
            n if n > 0 => break,
            0 => continue,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // The init's exit can no longer be seen, and sweeping now
                // would kill a running container: leave dropbear to the
                // poststop stage, which kills it through the pid file.
                eprintln!("berth ssh keeper: cannot wait for the container's init: {e}");
                let _ = child.wait();
                std::process::exit(1)
            }
        }
    }
    sweep(ns);
    let _ = child.wait();
    std::process::exit(0)
}

/// Closes every fd from 3 up except `keep`.
fn close_fds_but(keep: &[i32]) {
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    for fd in open.into_iter().filter(|fd| *fd > 2 && !keep.contains(fd)) {
        // SAFETY: closing fds this process no longer uses; the ones its own
        // objects own are in `keep` (the read_dir fd is already closed).
        unsafe { libc::close(fd) };
    }
}

/// Kills every process of the container's mount namespace but us, until
/// none is left (dropbear's sessions may fork meanwhile).
fn sweep(ns: (u64, u64)) {
    let me = std::process::id().to_string();
    for _ in 0..100 {
        let members: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| n != me))
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|p: &i32| {
                std::fs::metadata(format!("/proc/{p}/ns/mnt"))
                    .is_ok_and(|m| (m.dev(), m.ino()) == ns)
            })
            .collect();
        if members.is_empty() {
            return;
        }
        for p in members {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts the command chrooted into the rootfs as the container user, with
/// no capabilities and no_new_privs.
fn spawn(l: &Launch, log: &std::fs::File) -> Result<std::process::Child, DaemonError> {
    let (out, err) = (
        log.try_clone().map_err(io("duplicate the log fd"))?,
        log.try_clone().map_err(io("duplicate the log fd"))?,
    );
    let root = std::ffi::CString::new(l.rootfs.as_os_str().as_encoded_bytes())
        .map_err(|_| DaemonError::Spawn("the rootfs path has a NUL byte".into()))?;
    let none = berth::caps::none();
    let (uid, gid, groups) = (l.uid, l.gid, l.groups.clone());
    let mut cmd = Command::new(&l.argv[0]);
    cmd.args(&l.argv[1..])
        .env_clear()
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: the keeper is single-threaded, so the closure may allocate; it
    // only makes system calls that change this child's own credentials.
    unsafe {
        cmd.pre_exec(move || {
            let last = std::io::Error::last_os_error;
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                return Err(last());
            }
            berth::caps::drop_bounding(&none).map_err(std::io::Error::other)?;
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(last());
            }
            berth::caps::apply(&none).map_err(std::io::Error::other)?;
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(last());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| DaemonError::Spawn(format!("{}: {e}", l.argv[0])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_tolerates_a_missing_or_dead_dropbear() {
        let dir = tempfile::tempdir().unwrap();
        stop(dir.path()).unwrap();
        // A pid file naming a process that is gone (pid 1 with a wrong start time).
        std::fs::write(dir.path().join(PID_FILE), "1 1\n").unwrap();
        stop(dir.path()).unwrap();
        assert!(!dir.path().join(PID_FILE).exists());
    }

    #[test]
    fn stop_kills_the_recorded_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id() as i32;
        write_pid_file(dir.path(), pid).unwrap();
        stop(dir.path()).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "killed: {status:?}");
        assert!(!dir.path().join(PID_FILE).exists());
    }

    #[test]
    fn listening_sees_our_own_socket_only_on_its_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id() as i32;
        assert!(listening(me, port));
        assert!(!listening(me, port.wrapping_add(1)));
        assert!(
            !listening(1, port),
            "another process's socket does not count"
        );
    }
}
