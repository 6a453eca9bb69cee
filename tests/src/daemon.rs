//! Starting and stopping the harness's daemons (munged, slurmctld, slurmd,
//! docker-registry).
//!
//! Each daemon runs in the foreground as our child in its own session, with
//! stdout and stderr appended to its log file, so an early exit is seen at once
//! (instead of a pid file that never appears) and its last log lines explain why.
//! Every daemon carries an environment mark that its own children inherit, so
//! teardown finds everything it started, slurmstepd included.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::proc;

/// Errors starting a daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The program is not installed or cannot be run.
    #[error("cannot run {program} for {name}: {source}: install the Debian package {package}")]
    Spawn {
        name: String,
        program: String,
        package: String,
        source: std::io::Error,
    },
    /// The daemon exited during start-up.
    #[error("{name} failed to start ({status}): {last} (log: {})", log.display())]
    Exited {
        name: String,
        status: String,
        last: String,
        log: PathBuf,
        tail: Vec<String>,
    },
    /// The daemon kept running but never became ready.
    #[error("{name} did not become ready within {secs} s: {last} (log: {})", log.display())]
    Timeout {
        name: String,
        secs: u64,
        last: String,
        log: PathBuf,
        tail: Vec<String>,
    },
    /// A file of the daemon could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DaemonError {
    /// The last lines of the daemon's log, for printing under the one-line error.
    pub fn log_tail(&self) -> &[String] {
        match self {
            DaemonError::Exited { tail, .. } | DaemonError::Timeout { tail, .. } => tail,
            _ => &[],
        }
    }
}

/// How to run one daemon.
pub struct Daemon<'a> {
    /// Name used in messages and for the pid file (`<run_dir>/<name>.pid`).
    pub name: &'a str,
    /// The program to run in the foreground.
    pub program: &'a str,
    /// Its arguments.
    pub args: Vec<String>,
    /// The Debian package providing the program, named when it is missing.
    pub package: &'a str,
    /// Where its pid file and log go.
    pub run_dir: &'a Path,
    /// The environment mark `(key, value)` that teardown looks for.
    pub mark: (&'a str, &'a str),
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Daemon<'_> {
    /// Path of the daemon's log (stdout and stderr).
    pub fn log(&self) -> PathBuf {
        self.run_dir.join(format!("{}.log", self.name))
    }

    /// Path of the pid file the harness keeps for this daemon.
    pub fn pid_file(&self) -> PathBuf {
        pid_file(self.run_dir, self.name)
    }

    /// Starts the daemon and polls `ready` until it returns true; fails if the
    /// daemon exits first or `timeout` passes (then it is stopped again).
    pub fn start(
        &self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<i32, DaemonError> {
        let log_path = self.log();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DaemonError::Io { path, source }
        };
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let mut cmd = Command::new(self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io(&log_path))?)
            .stderr(log)
            .env(self.mark.0, self.mark.1)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        // SAFETY: setsid is async-signal-safe; a new session keeps the daemon out of
        // the caller's terminal signals and process group, like a real daemon.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        let start_line = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let mut child = cmd.spawn().map_err(|source| DaemonError::Spawn {
            name: self.name.into(),
            program: self.program.into(),
            package: self.package.into(),
            source,
        })?;
        let pid = child.id() as i32;
        if let Err(e) = fs::write(self.pid_file(), format!("{pid}\n")) {
            // Without its pid file teardown could not find it: stop it now.
            proc::terminate(pid, Duration::from_secs(5));
            let _ = child.wait();
            return Err(io(&self.pid_file())(e));
        }

        // An exit is checked before readiness: a daemon that dies right after
        // its port opened did not start.
        let outcome = proc::wait_for(timeout, || match child.try_wait() {
            Ok(Some(status)) => Some(Err(status)),
            _ => ready().then_some(Ok(())),
        });
        match outcome {
            Some(Ok(())) => Ok(pid),
            Some(Err(status)) => {
                let _ = fs::remove_file(self.pid_file());
                let (last, tail) = self.explain(start_line);
                Err(DaemonError::Exited {
                    name: self.name.into(),
                    status: status.to_string(),
                    last,
                    log: log_path,
                    tail,
                })
            }
            None => {
                proc::terminate(pid, Duration::from_secs(5));
                let _ = child.wait();
                let _ = fs::remove_file(self.pid_file());
                let (last, tail) = self.explain(start_line);
                Err(DaemonError::Timeout {
                    name: self.name.into(),
                    secs: timeout.as_secs(),
                    last,
                    log: log_path,
                    tail,
                })
            }
        }
    }

    /// The most telling log text of this start attempt, and the tail of the log.
    fn explain(&self, from: u64) -> (String, Vec<String>) {
        let text = fs::read(self.log()).unwrap_or_default();
        let fresh = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
        let lines: Vec<&str> = fresh.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(15)..]
            .iter()
            .map(|l| l.to_string())
            .collect();
        (cause(&lines), tail)
    }
}

/// One line saying why a daemon died: its last fatal or error line, and when that
/// is a generic fatal ("Unable to process configuration file"), the last error
/// before it, which names the real culprit.
fn cause(lines: &[&str]) -> String {
    let is = |l: &&str, word: &str| l.to_ascii_lowercase().contains(word);
    let fatal = lines.iter().rposition(|l| is(l, "fatal"));
    let error = lines[..fatal.unwrap_or(lines.len())]
        .iter()
        .rposition(|l| is(l, "error"));
    match (fatal, error) {
        (Some(f), Some(e)) => format!("{} ({})", lines[f].trim(), lines[e].trim()),
        (Some(i), None) | (None, Some(i)) => lines[i].trim().to_string(),
        (None, None) => lines
            .last()
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|| "no output".into()),
    }
}

/// The pid file the harness keeps for daemon `name` in `run_dir`.
pub fn pid_file(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join(format!("{name}.pid"))
}

/// The pid of daemon `name` if its pid file names a live process.
pub fn running(run_dir: &Path, name: &str) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(run_dir, name))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    proc::is_alive(pid).then_some(pid)
}

/// Stops daemon `name` (SIGTERM, then SIGKILL after `grace`) and removes its pid file.
pub fn stop(run_dir: &Path, name: &str, grace: Duration) {
    if let Some(pid) = running(run_dir, name) {
        proc::terminate(pid, grace);
    }
    let _ = fs::remove_file(pid_file(run_dir, name));
}

/// What the kit starts and can stop again: a cluster (with node 2's network
/// namespace), a registry.
pub trait Stop {
    /// Why stopping failed.
    type Error: std::fmt::Display;
    /// Stops everything it started; a no-op when nothing runs, so it may run twice.
    fn teardown(&self) -> Result<(), Self::Error>;
}

/// Owns what a test started and stops it when dropped, so a failing assertion
/// leaves no daemon, step or network namespace behind for later tests. Derefs to
/// what it owns; a test that checks teardown itself calls `stop` on that, and
/// the drop then finds nothing left.
#[derive(Debug)]
pub struct StopOnDrop<T: Stop>(pub T);

impl<T: Stop> std::ops::Deref for StopOnDrop<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Stop> Drop for StopOnDrop<T> {
    fn drop(&mut self) {
        // Drop cannot fail: say what survived, as a later test may trip on it.
        if let Err(e) = self.0.teardown() {
            eprintln!("teardown after the test failed: {e}");
        }
    }
}

/// Kills every live process carrying the mark; returns those that survived.
pub fn kill_marked(mark: (&str, &str)) -> Vec<i32> {
    for pid in proc::with_env(mark.0, mark.1) {
        proc::terminate(pid, Duration::from_secs(3));
    }
    proc::with_env(mark.0, mark.1)
}

#[cfg(test)]
mod tests {
    use super::cause;

    #[test]
    fn cause_joins_fatal_with_the_error_before_it() {
        let log = [
            "starting",
            "error: bad key: Foo",
            "fatal: Unable to process configuration file",
        ];
        assert_eq!(
            cause(&log),
            "fatal: Unable to process configuration file (error: bad key: Foo)"
        );
        assert_eq!(cause(&["a", "error: x", "b"]), "error: x");
        assert_eq!(cause(&["a", "b"]), "b");
        assert_eq!(cause(&[]), "no output");
    }
}
