//! The launch barrier hook: no task of a multi-node Slurm step starts before
//! every node's container is ready.
//!
//! `berth slurm-create` runs in slurmstepd before the step's tasks start, and
//! this hook (last in hooks.d order) blocks it until every node of the step
//! has reached the same point, meeting in a per-step directory of a
//! filesystem all nodes share ([`dir`]). Steps on one node pass straight
//! through. Settings come from the hook's env: `BARRIER_DIR` (required),
//! `BARRIER_TIMEOUT_S` (default 300) and `BARRIER_POLL_MS` (default 100).

pub mod dir;
pub mod hostlist;

use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::Container;
use dir::{DirError, StepDir};

/// Errors of the barrier hook.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    /// A required setting of the hook's JSON file is missing or invalid.
    #[error("{0}")]
    Config(String),
    /// A Slurm annotation the runtime should have set is missing or invalid.
    #[error("annotation {key} is {value:?}: the barrier needs it for multi-node steps (set by spank_berth.so)")]
    Annotation { key: &'static str, value: String },
    /// Reading the container failed.
    #[error(transparent)]
    Hook(#[from] crate::HookError),
    /// The rendezvous failed.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// Some nodes did not arrive in time.
    #[error("launch barrier of step {step}: timed out after {secs}s waiting for node(s) {missing}: their containers were not ready (see their slurmd logs), or BARRIER_DIR {dir} is not shared by all nodes")]
    Timeout {
        step: String,
        secs: u64,
        missing: String,
        dir: String,
    },
}

/// What this node knows about its step, from the container's annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub job_id: String,
    pub step_id: String,
    pub restart_count: String,
    pub node_id: u32,
    pub nnodes: u32,
    /// Host names by node id (from the step's node list).
    pub hosts: Vec<String>,
}

impl Step {
    /// The step of `c`, or `None` when it is not a multi-node Slurm step.
    pub fn of(c: &Container) -> Result<Option<Step>, BarrierError> {
        let get = |key: &'static str| c.annotation(key).unwrap_or("");
        let number = |key: &'static str| {
            let value = get(key);
            value.parse::<u32>().map_err(|_| BarrierError::Annotation {
                key,
                value: value.into(),
            })
        };
        let id = |key: &'static str, default: &str| {
            let value = c.annotation(key).unwrap_or(default);
            let ok = !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            ok.then(|| value.to_string())
                .ok_or_else(|| BarrierError::Annotation {
                    key,
                    value: value.into(),
                })
        };
        if c.annotation("com.berth.slurm.nnodes").is_none() {
            return Ok(None);
        }
        let nnodes = number("com.berth.slurm.nnodes")?;
        if nnodes < 2 {
            return Ok(None);
        }
        let node_id = number("com.berth.slurm.node_id")?;
        if node_id >= nnodes {
            return Err(BarrierError::Annotation {
                key: "com.berth.slurm.node_id",
                value: node_id.to_string(),
            });
        }
        Ok(Some(Step {
            job_id: id("com.berth.slurm.job_id", "")?,
            step_id: id("com.berth.slurm.step_id", "")?,
            restart_count: id("com.berth.slurm.restart_count", "0")?,
            node_id,
            nnodes,
            hosts: hostlist::expand(get("com.berth.slurm.nodelist")),
        }))
    }

    /// The directory name of this run of the step.
    pub fn key(&self) -> String {
        format!("{}.{}.{}", self.job_id, self.step_id, self.restart_count)
    }

    /// `2 (node3), 5 (node6)`: node ids with their host names when known.
    pub fn describe(&self, ids: &[u32]) -> String {
        ids.iter()
            .map(|i| match self.hosts.get(*i as usize) {
                Some(h) => format!("{i} ({h})"),
                None => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The hook's settings, from its env.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Settings {
    /// Reads `BARRIER_DIR`, `BARRIER_TIMEOUT_S` and `BARRIER_POLL_MS`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Self, BarrierError> {
        let dir = env("BARRIER_DIR").filter(|d| d.starts_with('/')).ok_or_else(|| {
            BarrierError::Config("BARRIER_DIR is not an absolute path in the hook's env: set it in the barrier's hooks.d file to a directory every node shares".into())
        })?;
        let number = |name: &str, default: u64| -> Result<u64, BarrierError> {
            match env(name) {
                None => Ok(default),
                Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    BarrierError::Config(format!(
                        "{name}={v:?} in the hook's env is not a positive whole number"
                    ))
                }),
            }
        };
        Ok(Settings {
            dir: PathBuf::from(dir),
            timeout: Duration::from_secs(number("BARRIER_TIMEOUT_S", 300)?),
            poll: Duration::from_millis(number("BARRIER_POLL_MS", 100)?),
        })
    }
}

/// The hook: waits for every node of a multi-node step.
pub fn run(c: &Container) -> Result<(), BarrierError> {
    let Some(step) = Step::of(c)? else {
        return Ok(());
    };
    let settings = Settings::from_env(|k| std::env::var(k).ok())?;
    // Held from the start: the init's pid cannot be reused while we wait.
    let pid = c.pid()?;
    let init = berth::container::pidfd(pid);
    // No pidfd: the init is already gone (ESRCH) or a zombie; do not wait the
    // whole timeout for a container that no longer exists.
    let alive = || match &init {
        Some(fd) => !exited(fd.as_raw_fd()),
        None => berth::state::proc_stat(pid).is_some_and(|(st, _)| st != b'Z' && st != b'X'),
    };
    let d = StepDir::open(&settings.dir, &step.key(), step.node_id, step.nnodes)?;
    let deadline = Instant::now() + settings.timeout;
    match d.rendezvous(settings.poll, deadline, alive) {
        Err(DirError::Timeout(missing)) => Err(BarrierError::Timeout {
            step: format!("{}.{}", step.job_id, step.step_id),
            secs: settings.timeout.as_secs(),
            missing: step.describe(&missing),
            dir: settings.dir.display().to_string(),
        }),
        other => Ok(other?),
    }
}

/// True when the process behind `pidfd` has exited.
fn exited(pidfd: i32) -> bool {
    let mut p = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn settings_need_an_absolute_dir_and_positive_numbers() {
        let s = Settings::from_env(env(&[("BARRIER_DIR", "/shared/b")])).unwrap();
        assert_eq!(s.timeout, Duration::from_secs(300));
        assert_eq!(s.poll, Duration::from_millis(100));
        let err = Settings::from_env(env(&[])).unwrap_err().to_string();
        assert!(err.contains("BARRIER_DIR"), "{err}");
        let err = Settings::from_env(env(&[("BARRIER_DIR", "/b"), ("BARRIER_TIMEOUT_S", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BARRIER_TIMEOUT_S=\"0\""), "{err}");
    }

    #[test]
    fn describe_names_hosts_by_node_id() {
        let step = Step {
            job_id: "7".into(),
            step_id: "0".into(),
            restart_count: "0".into(),
            node_id: 0,
            nnodes: 3,
            hosts: hostlist::expand("n[1-3]"),
        };
        assert_eq!(step.key(), "7.0.0");
        assert_eq!(step.describe(&[1, 2, 9]), "1 (n2), 2 (n3), 9");
    }
}
