//! `delete`: a stopped (or, like runc, a never-started created) container
//! is cleaned up; a running one only with `--force`. Poststop hooks run
//! last and only warn on failure.

use super::ContainerError;
use crate::state::{State, Status};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

/// Delete the container `id`.
pub fn delete(root: &Path, id: &str, force: bool) -> crate::Result<()> {
    let st = match State::load(root, id) {
        Ok(s) => s,
        // --force on a missing container is not an error (runc semantics),
        // but a half-created directory without state is still removed.
        Err(crate::state::StateError::NotFound(_)) if force => {
            let _ = State::remove(root, id);
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let status = st.status(root);
    match status {
        Status::Stopped => {}
        Status::Created => stop(&st)?,
        _ if force => stop(&st)?,
        _ => {
            return Err(ContainerError::NotStopped {
                id: id.into(),
                status,
            }
            .into())
        }
    }
    if !st.own_pidns {
        // Without a pid namespace, killing init does not take the others.
        for p in super::kill::members(&st) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
    // A cgroup we cannot remove keeps the state, so a later delete retries.
    crate::cgroups::remove(&st.cgroups_created, &st.cgroup_parents_created)?;
    State::remove(root, id)?;
    if let Some(h) = st.hooks.as_ref().and_then(|h| h.poststop().clone()) {
        let state = serde_json::to_string(&st.oci(Status::Stopped)).expect("state serializes");
        crate::hooks::run_all_warn("poststop", &h, &state);
    }
    Ok(())
}

fn stop(st: &State) -> crate::Result<()> {
    for p in super::kill::members(st) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let _ = kill(Pid::from_raw(st.pid), Signal::SIGKILL);
    if !super::wait_exit(st.pid, st.start_time, Duration::from_secs(10)) {
        return Err(ContainerError::Other(format!(
            "container init {} did not exit after SIGKILL",
            st.pid
        ))
        .into());
    }
    Ok(())
}
