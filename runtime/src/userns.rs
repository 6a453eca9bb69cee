//! uid/gid maps of a new user namespace, written by the runtime (outside
//! the namespace). A single mapping of our own id is written directly
//! (setgroups must be denied first); ranges go through the setuid helpers
//! newuidmap/newgidmap, which check /etc/subuid and /etc/subgid.

use oci_spec::runtime::LinuxIdMapping;
use std::process::Command;

/// Errors writing id maps.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("write {file} of pid {pid}: {source}")]
    Write {
        file: &'static str,
        pid: i32,
        source: std::io::Error,
    },
    #[error("{helper} failed ({detail}); check /etc/subuid and /etc/subgid for this user")]
    Helper {
        helper: &'static str,
        detail: String,
    },
    #[error("user namespace without {0} mappings")]
    Missing(&'static str),
}

fn format(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write(pid: i32, file: &'static str, data: &str) -> Result<(), UsernsError> {
    std::fs::write(format!("/proc/{pid}/{file}"), data).map_err(|source| UsernsError::Write {
        file,
        pid,
        source,
    })
}

fn helper(helper: &'static str, pid: i32, maps: &[LinuxIdMapping]) -> Result<(), UsernsError> {
    let mut cmd = Command::new(helper);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let out = cmd.output().map_err(|e| UsernsError::Helper {
        helper,
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string();
        return Err(UsernsError::Helper {
            helper,
            detail: format!("{}: {detail}", out.status),
        });
    }
    Ok(())
}

/// Whether a mapping set is just "our own id", which an unprivileged
/// process may write itself.
fn is_self(maps: &[LinuxIdMapping], id: u32) -> bool {
    maps.len() == 1 && maps[0].size() == 1 && maps[0].host_id() == id
}

/// Write both maps for `pid`.
pub fn write_maps(
    pid: i32,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<(), UsernsError> {
    if uid.is_empty() {
        return Err(UsernsError::Missing("uid"));
    }
    if gid.is_empty() {
        return Err(UsernsError::Missing("gid"));
    }
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    if euid == 0 {
        write(pid, "uid_map", &format(uid))?;
        write(pid, "gid_map", &format(gid))?;
        return Ok(());
    }
    if is_self(uid, euid) {
        write(pid, "uid_map", &format(uid))?;
    } else {
        helper("newuidmap", pid, uid)?;
    }
    if is_self(gid, egid) {
        // The kernel refuses an unprivileged gid_map while setgroups is allowed.
        write(pid, "setgroups", "deny")?;
        write(pid, "gid_map", &format(gid))?;
    } else {
        helper("newgidmap", pid, gid)?;
    }
    Ok(())
}
