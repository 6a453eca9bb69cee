//! `kill`: signal the init, or with `--all` every process of the container
//! (its cgroup, or every process sharing its pid namespace).

use super::ContainerError;
use crate::state::{State, Status};
use nix::sys::signal::{kill as sys_kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::str::FromStr;

/// Parse "TERM", "SIGTERM", "term" or "15".
pub fn parse_signal(s: &str) -> Result<Signal, ContainerError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| ContainerError::BadSignal(s.into()));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    Signal::from_str(&name).map_err(|_| ContainerError::BadSignal(s.into()))
}

/// Send `sig` to the container.
pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> crate::Result<()> {
    let st = State::load(root, id)?;
    let status = st.status(root);
    if status == Status::Stopped {
        return Err(ContainerError::NotRunning(id.into()).into());
    }
    if all {
        for p in members(&st) {
            let _ = sys_kill(Pid::from_raw(p), sig);
        }
    }
    sys_kill(Pid::from_raw(st.pid), sig).map_err(|source| ContainerError::Sys {
        what: format!("kill {}", st.pid),
        source,
    })?;
    Ok(())
}

/// Processes that belong to the container: those in its cgroup, else those
/// in a namespace it created (pid, then mount). Without either, only the
/// init is known to be the container's.
pub fn members(st: &State) -> Vec<i32> {
    let procs = crate::cgroups::procs(&st.cgroups);
    if !procs.is_empty() || !st.cgroups.is_empty() {
        return procs;
    }
    if st.own_pidns {
        return in_namespace(st.pid, "pid");
    }
    if st.own_mntns {
        // Processes that joined the mount namespace (a Slurm step's tasks,
        // daemons a hook started) or were left behind by the init.
        return in_namespace(st.pid, "mnt");
    }
    Vec::new()
}

/// Every process sharing `init`'s namespace of type `kind`.
fn in_namespace(init: i32, kind: &str) -> Vec<i32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/{kind}")) else {
        return Vec::new();
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/{kind}")).is_ok_and(|l| l == ns))
        .collect()
}
