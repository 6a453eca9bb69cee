//! cgroup v1 (and the hybrid layout): one directory per mounted hierarchy.

use super::{check_unsupported, io, write, CgroupError, Placement};
use crate::rootfs::devices;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Create `rel` under every hierarchy and apply `res`.
pub fn setup(
    rel: &Path,
    res: Option<&LinuxResources>,
    devs: &[LinuxDevice],
) -> Result<Placement, CgroupError> {
    if let Some(r) = res {
        check_unsupported(r)?;
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Unsupported(
                "linux.resources.unified on a cgroup v1 host".into(),
            ));
        }
    }
    let mut placed = Placement::default();
    let entries = std::fs::read_dir(ROOT).map_err(io(Path::new(ROOT)))?;
    for e in entries.flatten() {
        let hier = e.path();
        // Only real hierarchies (a mounted cgroup has cgroup.procs); the
        // directory is symlinked for co-mounted controllers (cpu,cpuacct).
        if !e.file_type().is_ok_and(|t| t.is_dir()) || !hier.join("cgroup.procs").exists() {
            continue;
        }
        placed
            .make(&hier, rel, copy_cpusets)
            .map_err(|e| placed.undo(e))?;
    }
    if let Some(r) = res {
        apply_to(rel, r, devs).map_err(|e| placed.undo(e))?;
    }
    Ok(placed)
}

/// Copies cpuset.cpus/mems down to a new level: a cpuset cgroup with empty
/// sets refuses tasks (other hierarchies have no such files).
fn copy_cpusets(parent: &Path, new: &Path) {
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
            let _ = std::fs::write(new.join(f), v.trim());
        }
    }
}

fn dir(ctrl: &str, rel: &Path) -> PathBuf {
    Path::new(ROOT).join(ctrl).join(rel)
}

fn apply_to(rel: &Path, r: &LinuxResources, devs: &[LinuxDevice]) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        let d = dir("memory", rel);
        if let Some(v) = m.limit() {
            write(&d, "memory.limit_in_bytes", &v.to_string())?;
        }
        if let Some(v) = m.swap() {
            if !d.join("memory.memsw.limit_in_bytes").exists() {
                return Err(CgroupError::Unsupported(
                    "memory.swap: this kernel has no swap accounting".into(),
                ));
            }
            write(&d, "memory.memsw.limit_in_bytes", &v.to_string())?;
        }
        if let Some(v) = m.reservation() {
            write(&d, "memory.soft_limit_in_bytes", &v.to_string())?;
        }
        if let Some(v) = m.swappiness() {
            write(&d, "memory.swappiness", &v.to_string())?;
        }
        if m.disable_oom_killer() == Some(true) {
            write(&d, "memory.oom_control", "1")?;
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            return Err(CgroupError::Unsupported(
                "memory.kernel and memory.kernelTCP (removed from Linux)".into(),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        let d = dir("cpu", rel);
        if let Some(v) = c.shares() {
            write(&d, "cpu.shares", &v.to_string())?;
        }
        if let Some(v) = c.period() {
            write(&d, "cpu.cfs_period_us", &v.to_string())?;
        }
        if let Some(v) = c.quota() {
            write(&d, "cpu.cfs_quota_us", &v.to_string())?;
        }
        if let Some(v) = c.realtime_period() {
            write(&d, "cpu.rt_period_us", &v.to_string())?;
        }
        if let Some(v) = c.realtime_runtime() {
            write(&d, "cpu.rt_runtime_us", &v.to_string())?;
        }
        let cs = dir("cpuset", rel);
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(&cs, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(&cs, "cpuset.mems", v)?;
        }
        if c.idle().is_some() || c.burst().is_some() {
            return Err(CgroupError::Unsupported(
                "cpu.idle and cpu.burst on cgroup v1".into(),
            ));
        }
    }
    if let Some(p) = r.pids() {
        let v = if p.limit() > 0 {
            p.limit().to_string()
        } else {
            "max".into()
        };
        write(&dir("pids", rel), "pids.max", &v)?;
    }
    if let Some(rules) = r.devices() {
        let d = dir("devices", rel);
        for rule in rules {
            let file = if rule.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(&d, file, &rule_string(rule))?;
        }
        // The spec's default devices, the config's devices and ptys stay
        // usable whatever the rules say (as runc does).
        let mut allow: Vec<String> = devices::defaults()
            .iter()
            .map(|x| format!("c {}:{} rwm", x.major, x.minor))
            .collect();
        allow.extend(["c 136:* rwm".into(), "c 5:2 rwm".into(), "c 5:1 rwm".into()]);
        for x in devs {
            let t = match x.typ() {
                LinuxDeviceType::B => 'b',
                _ => 'c',
            };
            allow.push(format!("{t} {}:{} rwm", x.major(), x.minor()));
        }
        for a in allow {
            write(&d, "devices.allow", &a)?;
        }
    }
    Ok(())
}

/// "type major:minor access" with '*' for wildcards; "a" alone for all.
pub fn rule_string(r: &LinuxDeviceCgroup) -> String {
    let t = match r.typ() {
        Some(LinuxDeviceType::C) => 'c',
        Some(LinuxDeviceType::B) => 'b',
        Some(LinuxDeviceType::A) | None => 'a',
        _ => 'a',
    };
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    if t == 'a' && r.major().is_none() && r.minor().is_none() {
        return format!("a *:* {access}");
    }
    format!("{t} {}:{} {access}", n(r.major()), n(r.minor()))
}
