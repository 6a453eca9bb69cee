//! `berth spec`: writes a starting `config.json`: oci-spec's default
//! configuration (the shape of `runc spec`), or its rootless one for an
//! unprivileged user (a user namespace mapping their own ids to root, no
//! network namespace, the host's /sys bound read-only), with only berth's
//! deliberate differences applied on top.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::Value;

/// Errors writing the starting configuration.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{} exists: remove it first", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the default configuration mounts the cgroup filesystem.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The default configuration; `rootless` gives the (uid, gid) to map to 0.
pub fn default_spec(rootless: Option<(u32, u32)>) -> Value {
    let mut spec = match rootless {
        Some((uid, gid)) => Spec::rootless(uid, gid),
        None => Spec::default(),
    };
    // oci-spec's default names the container after youki.
    spec.set_hostname(Some("berth".into()));
    if let Some(process) = spec.process_mut() {
        // No inheritable set: it lets a program run as a non-root user keep
        // the capabilities (CVE-2022-29162, which `runc spec` fixed the same
        // way). No ambient set either: an ambient capability must also be
        // inheritable, so it could not be raised and every start would warn.
        let mut caps = process.capabilities().clone().unwrap_or_default();
        caps.set_inheritable(None);
        caps.set_ambient(None);
        process.set_capabilities(Some(caps));
    }
    // No /sys/fs/cgroup mount: on a cgroup v1 host it is a tmpfs plus one bind
    // per hierarchy, more mounts than the rest of the config together, for a
    // starting container that does not need to see its cgroups.
    if let Some(mounts) = spec.mounts_mut() {
        mounts.retain(|m| m.destination() != Path::new(CGROUP_MOUNT));
    }
    if let Some(ns) = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
    {
        // No cgroup namespace (`runc spec`'s five namespaces): berth moves the
        // init into its cgroup after cloning it, so a cgroup namespace made
        // with the init would be rooted at the caller's cgroup, not the
        // container's, once a cgroupsPath is added.
        ns.retain(|n| n.typ() != LinuxNamespaceType::Cgroup);
    }
    serde_json::to_value(&spec).expect("spec serializes")
}

/// Writes `bundle/config.json`; refuses to overwrite one (as runc does).
pub fn write(bundle: &Path, rootless: Option<(u32, u32)>) -> Result<(), SpecError> {
    let path = bundle.join("config.json");
    let text = serde_json::to_string_pretty(&default_spec(rootless)).expect("spec serializes");
    let io = |source| SpecError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SpecError::Exists(path.clone()),
            _ => io(e),
        })?;
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    fn parsed(rootless: Option<(u32, u32)>) -> Spec {
        serde_json::from_value(default_spec(rootless)).unwrap()
    }

    #[test]
    fn the_spec_is_oci_specs_but_for_berths_differences() {
        for rootless in [None, Some((4242, 4243))] {
            let spec = parsed(rootless);
            let mut want = rootless.map_or_else(Spec::default, |(u, g)| Spec::rootless(u, g));
            // Everything but what `berths_differences_are_applied` checks.
            want.set_hostname(spec.hostname().clone());
            let caps = spec.process().as_ref().unwrap().capabilities().clone();
            want.process_mut().as_mut().unwrap().set_capabilities(caps);
            want.mounts_mut()
                .as_mut()
                .unwrap()
                .retain(|m| m.destination() != Path::new(CGROUP_MOUNT));
            let linux = want.linux_mut().as_mut().unwrap();
            linux
                .namespaces_mut()
                .as_mut()
                .unwrap()
                .retain(|n| n.typ() != LinuxNamespaceType::Cgroup);
            assert_eq!(spec, want, "rootless: {rootless:?}");
        }
    }

    #[test]
    fn berths_differences_are_applied() {
        for rootless in [None, Some((4242, 4243))] {
            let spec = parsed(rootless);
            assert_eq!(spec.hostname().as_deref(), Some("berth"));
            let linux = spec.linux().as_ref().unwrap();
            assert_eq!(linux.uid_mappings().is_some(), rootless.is_some());
            let ns = linux.namespaces().clone().unwrap();
            assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Cgroup));
            assert!(spec
                .mounts()
                .iter()
                .flatten()
                .all(|m| m.destination() != Path::new(CGROUP_MOUNT)));
            let process = spec.process().as_ref().unwrap();
            let caps = process.capabilities().as_ref().unwrap();
            assert!(caps.inheritable().is_none() && caps.ambient().is_none());
            let bounding = caps.bounding().clone().unwrap();
            assert!(bounding.contains(&Capability::Kill) && bounding.len() == 3);
        }
    }

    #[test]
    fn an_existing_config_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), None).unwrap();
        let err = write(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("exists: remove it first"), "{err}");
    }
}
