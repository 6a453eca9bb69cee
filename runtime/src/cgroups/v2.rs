//! cgroup v2 (unified): one directory, controllers enabled in every parent.

use super::{check_unsupported, write, CgroupError, Placement};
use oci_spec::runtime::{LinuxDevice, LinuxResources};
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Create `rel` and apply `res`.
pub fn setup(
    rel: &Path,
    res: Option<&LinuxResources>,
    _devs: &[LinuxDevice],
) -> Result<Placement, CgroupError> {
    if let Some(r) = res {
        check_unsupported(r)?;
        // Device rules on v2 need an eBPF program; refuse rather than run
        // a container with fewer restrictions than asked for.
        if r.devices()
            .as_ref()
            .is_some_and(|d| d.iter().any(|d| !d.allow()))
        {
            return Err(CgroupError::Unsupported(
                "device cgroup rules on cgroup v2".into(),
            ));
        }
    }
    let d = Path::new(ROOT).join(rel);
    let mut placed = Placement::default();
    placed
        .make(Path::new(ROOT), rel, |_, _| {})
        .map_err(|e| placed.undo(e))?;
    if let Some(r) = res {
        // Enable what we need from the root down to our parent.
        let mut cur = PathBuf::from(ROOT);
        let ctrls = std::fs::read_to_string(cur.join("cgroup.controllers")).unwrap_or_default();
        let want: Vec<String> = ["cpu", "cpuset", "memory", "pids"]
            .iter()
            .filter(|c| ctrls.split_whitespace().any(|x| x == **c))
            .map(|c| format!("+{c}"))
            .collect();
        for comp in rel.components() {
            let _ = std::fs::write(cur.join("cgroup.subtree_control"), want.join(" "));
            cur.push(comp);
        }
        apply(&d, r).map_err(|e| placed.undo(e))?;
    }
    Ok(placed)
}

fn apply(d: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    if let Some(m) = r.memory() {
        if let Some(v) = m.limit() {
            write(d, "memory.max", &max(v))?;
        }
        if let Some(v) = m.reservation() {
            write(d, "memory.low", &max(v))?;
        }
        if let Some(v) = m.swap() {
            // v1 semantics: swap is memory+swap; v2 wants swap alone.
            let s = if v < 0 {
                "max".to_string()
            } else {
                // An unlimited (-1) or absent memory limit leaves all of it to swap.
                let limit = m.limit().filter(|l| *l >= 0).unwrap_or(0);
                v.saturating_sub(limit).max(0).to_string()
            };
            write(d, "memory.swap.max", &s)?;
        }
        if m.kernel().is_some() || m.kernel_tcp().is_some() || m.swappiness().is_some() {
            return Err(CgroupError::Unsupported(
                "memory.kernel, kernelTCP and swappiness on cgroup v2".into(),
            ));
        }
        if m.disable_oom_killer() == Some(true) {
            return Err(CgroupError::Unsupported(
                "memory.disableOOMKiller on cgroup v2".into(),
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            let w = if s == 0 {
                100
            } else {
                // shares 2..262144 map onto weight 1..10000 (as runc); clamp
                // first so a huge value cannot overflow.
                1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142
            };
            write(d, "cpu.weight", &w.to_string())?;
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c
                .quota()
                .filter(|q| *q > 0)
                .map_or("max".to_string(), |q| q.to_string());
            write(
                d,
                "cpu.max",
                &format!("{q} {}", c.period().unwrap_or(100000)),
            )?;
        }
        if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write(d, "cpuset.cpus", v)?;
        }
        if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write(d, "cpuset.mems", v)?;
        }
        if c.realtime_period().is_some() || c.realtime_runtime().is_some() {
            return Err(CgroupError::Unsupported(
                "realtime cpu limits on cgroup v2".into(),
            ));
        }
    }
    if let Some(p) = r.pids() {
        write(d, "pids.max", &max(p.limit()))?;
    }
    for (k, v) in r.unified().iter().flatten() {
        if k.contains('/') {
            return Err(CgroupError::Unsupported(format!("unified key {k}")));
        }
        write(d, k, v)?;
    }
    Ok(())
}

fn max(v: i64) -> String {
    if v <= 0 {
        "max".into()
    } else {
        v.to_string()
    }
}
