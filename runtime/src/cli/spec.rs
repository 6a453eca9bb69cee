//! `berth spec`: writes a starting `config.json`, shaped like `runc spec`'s
//! (the namespaces, mounts, masked paths and three capabilities every OCI
//! runtime user knows), for an unprivileged user with a user namespace mapping
//! their own ids to root.

use std::path::Path;

use serde_json::{json, Value};

/// The default configuration; `rootless` gives the (uid, gid) to map to 0.
pub fn default_spec(rootless: Option<(u32, u32)>) -> Value {
    let mut c = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    if let Some((uid, gid)) = rootless {
        // A user namespace instead of a network namespace (a new one would
        // have no usable sysfs, so /sys is the host's, bound read-only); no
        // gid=5 on devpts, since the unmapped tty group cannot be set.
        c["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]);
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        c["mounts"][2]["options"] = json!([
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620"
        ]);
        c["mounts"][5] = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
    }
    c
}

/// Writes `bundle/config.json`; refuses to overwrite one (as runc does).
pub fn write(bundle: &Path, rootless: Option<(u32, u32)>) -> Result<(), String> {
    let path = bundle.join("config.json");
    let text = serde_json::to_string_pretty(&default_spec(rootless)).expect("spec serializes");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                format!("{} exists: remove it first", path.display())
            }
            _ => format!("cannot write {}: {e}", path.display()),
        })?;
    std::io::Write::write_all(&mut f, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_is_valid_oci() {
        for rootless in [None, Some((4242, 4243))] {
            let spec: oci_spec::runtime::Spec =
                serde_json::from_value(default_spec(rootless)).unwrap();
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(linux.uid_mappings().is_some(), rootless.is_some());
        }
    }

    #[test]
    fn an_existing_config_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), None).unwrap();
        let err = write(dir.path(), None).unwrap_err();
        assert!(err.contains("exists: remove it first"), "{err}");
    }
}
