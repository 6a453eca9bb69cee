//! Process and port facts read from `/proc`, for starting and stopping daemons
//! and for checking that nothing was left behind.

use std::collections::HashSet;
use std::fs;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// True when `pid` names a process that has not exited. A zombie counts as gone:
/// it runs nothing and only waits for its parent to reap it.
pub fn is_alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the command name, which is wrapped in parentheses
    // and may itself contain spaces or parentheses: split after the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// The short command name of `pid` (`/proc/PID/comm`), if it exists.
pub fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

fn all_pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// Live processes whose environment holds `key=value`.
///
/// The harness marks every daemon it starts this way; the mark is inherited by
/// what they fork (slurmstepd), so teardown can find them all.
pub fn with_env(key: &str, value: &str) -> Vec<i32> {
    let needle = format!("{key}={value}");
    all_pids()
        .filter(|&pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// Live processes in the namespace that `ns_file` names (a `/proc/PID/ns/KIND`
/// link or a bind-mounted namespace such as `/run/netns/NAME`).
pub fn in_namespace(ns_file: &Path, kind: &str) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs::metadata(ns_file) else {
        return vec![];
    };
    let want = format!("{kind}:[{}]", meta.ino());
    all_pids()
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/ns/{kind}"))
                .is_ok_and(|l| l.as_os_str() == want.as_str())
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// Live processes with their command line (arguments joined by spaces) for
/// which `keep` holds.
pub fn with_cmdline(mut keep: impl FnMut(&str) -> bool) -> Vec<(i32, String)> {
    all_pids()
        .filter(|p| is_alive(*p))
        .filter_map(|p| {
            let raw = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            keep(cmd.trim_end()).then(|| (p, cmd.trim_end().to_string()))
        })
        .collect()
}

/// Polls `done` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || done().then_some(())).is_some()
}

/// Polls `found` every 20 ms until it returns a value or `timeout` passes;
/// `None` on timeout. For waits that also learn something (an exit status, a pid).
pub fn wait_for<T>(timeout: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = found() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a test
/// that fails while it runs leaves no process behind. Derefs to the [`Child`].
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Both fail harmlessly when the test already killed and reaped it.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM, waits up to `grace` for the exit, then SIGKILLs. Returns once the
/// process is gone (or a zombie).
pub fn terminate(pid: i32, grace: Duration) {
    let target = Pid::from_raw(pid);
    if kill(target, Signal::SIGTERM).is_err() {
        return;
    }
    if !wait_until(grace, || !is_alive(pid)) {
        let _ = kill(target, Signal::SIGKILL);
        wait_until(Duration::from_secs(5), || !is_alive(pid));
    }
}

/// The process listening on TCP `port` on any local address, as (pid, comm).
///
/// Reads the kernel's socket table (`/proc/net/tcp{,6}`) for a socket in LISTEN
/// state on the port, then finds the process holding that socket inode.
pub fn port_owner(port: u16) -> Option<(i32, String)> {
    let inodes: HashSet<u64> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| listening_inode(l, port))
                .collect::<Vec<_>>()
        })
        .collect();
    let pid = *holding_sockets(&inodes).first()?;
    Some((pid, comm(pid).unwrap_or_default()))
}

/// Live processes holding a unix socket bound to a path under `dir`.
///
/// slurmstepd double-forks away from slurmd and clears its environment, but it
/// always binds its step socket in slurmd's spool directory: that finds it.
pub fn with_unix_socket_under(dir: &Path) -> Vec<i32> {
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    // Columns: Num RefCount Protocol Flags Type St Inode Path.
    let inodes: HashSet<u64> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let path = Path::new(cols.get(7)?);
            path.starts_with(dir).then(|| cols.get(6)?.parse().ok())?
        })
        .collect();
    holding_sockets(&inodes)
}

/// Live processes with an open fd on one of the socket `inodes`.
fn holding_sockets(inodes: &HashSet<u64>) -> Vec<i32> {
    if inodes.is_empty() {
        return vec![];
    }
    all_pids()
        .filter(|&pid| {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
                return false;
            };
            fds.flatten().any(|fd| {
                fs::read_link(fd.path())
                    .ok()
                    .and_then(|t| socket_inode(t.to_str()?))
                    .is_some_and(|i| inodes.contains(&i))
            })
        })
        .filter(|&pid| is_alive(pid))
        .collect()
}

/// The inode of an fd link text `socket:[12345]`.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The socket inode of one `/proc/net/tcp` row if it listens on `port`.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let local_port = u16::from_str_radix(cols.get(1)?.rsplit_once(':')?.1, 16).ok()?;
    // State 0A is TCP_LISTEN.
    (local_port == port && *cols.get(3)? == "0A").then(|| cols.get(9)?.parse().ok())?
}

/// True when something listens on TCP `port` in the network namespace of `pid`.
pub fn listening_in(pid: i32, port: u16) -> bool {
    fs::read_to_string(format!("/proc/{pid}/net/tcp")).is_ok_and(|t| {
        t.lines()
            .skip(1)
            .any(|l| listening_inode(l, port).is_some())
    })
}

/// True when something already listens on TCP `port`.
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
}

/// A free TCP port on 127.0.0.1 chosen by the kernel.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the kernel hands out an ephemeral port")
}

/// The last `n` non-empty lines of a log file (empty when it does not exist).
pub fn log_tail(path: &Path, n: usize) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive_and_reaped_child_is_not() {
        assert!(is_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!is_alive(pid));
    }

    #[test]
    fn finds_the_owner_of_a_listening_port() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(port_in_use(port));
        let (pid, _) = port_owner(port).expect("our own listener is found");
        assert_eq!(pid, std::process::id() as i32);
        drop(listener);
        assert!(port_owner(port).is_none());
    }

    #[test]
    fn finds_holders_of_unix_sockets_under_a_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sock = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        assert_eq!(
            with_unix_socket_under(dir.path()),
            vec![std::process::id() as i32]
        );
        drop(sock);
        assert!(with_unix_socket_under(dir.path()).is_empty());
    }

    #[test]
    fn finds_processes_by_environment_mark() {
        let mark = format!("mark-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("BERTH_TEST_MARK", &mark)
            .spawn()
            .unwrap();
        assert!(wait_until(Duration::from_secs(5), || with_env(
            "BERTH_TEST_MARK",
            &mark
        )
        .contains(&(child.id() as i32))));
        terminate(child.id() as i32, Duration::from_secs(1));
        child.wait().unwrap();
        assert!(with_env("BERTH_TEST_MARK", &mark).is_empty());
    }

    #[test]
    fn kill_on_drop_kills_and_reaps() {
        let child = KillOnDrop(
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap(),
        );
        let pid = child.id() as i32;
        assert!(is_alive(pid));
        drop(child);
        // Reaped, not a zombie: the pid no longer exists at all.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn wait_for_returns_the_value_found_or_none() {
        let mut n = 0;
        assert_eq!(
            wait_for(Duration::from_secs(5), || {
                n += 1;
                (n == 3).then_some(n)
            }),
            Some(3)
        );
        assert_eq!(wait_for(Duration::ZERO, || None::<()>), None);
    }

    #[test]
    fn tail_keeps_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fs::write(&log, "a\n\nb\nc\n").unwrap();
        assert_eq!(log_tail(&log, 2), vec!["b", "c"]);
        assert!(log_tail(&dir.path().join("missing"), 3).is_empty());
    }
}
