//! Which namespaces to create and which to join, from `linux.namespaces`.
//! Join fds are opened by the runtime before forking, which validates the
//! paths early and pins the namespaces against pid reuse races.

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Errors while planning or entering namespaces.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("open namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("join {kind} namespace: {source}")]
    Join {
        kind: &'static str,
        source: nix::Error,
    },
    #[error("create namespaces: {0}")]
    Unshare(nix::Error),
    #[error("rootless containers need a user namespace (linux.namespaces type \"user\")")]
    RootlessNeedsUserns,
    #[error("{0}")]
    Invalid(String),
}

/// The namespace plan for one container.
#[derive(Debug)]
pub struct Plan {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join, user first, with pinned fds.
    pub join: Vec<(CloneFlags, OwnedFd)>,
}

/// Clone flag of an OCI namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

fn kind(f: CloneFlags) -> &'static str {
    match f {
        CloneFlags::CLONE_NEWNS => "mount",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWNET => "network",
        _ => "unknown",
    }
}

impl Plan {
    /// Build the plan; `rootless` requires a user namespace.
    pub fn from_spec(spec: &Spec, rootless: bool) -> Result<Plan, NamespaceError> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        };
        for ns in spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let f = flag(ns.typ());
            match ns.path() {
                None => plan.new |= f,
                Some(p) => {
                    let fd = std::fs::File::open(p).map_err(|source| NamespaceError::Open {
                        path: p.clone(),
                        source,
                    })?;
                    plan.join.push((f, fd.into()));
                }
            }
        }
        // The user namespace must be entered first: it decides which
        // capabilities we hold over every other namespace.
        plan.join.sort_by_key(|(f, _)| {
            if *f == CloneFlags::CLONE_NEWUSER {
                0
            } else {
                1
            }
        });
        if rootless && !plan.has(CloneFlags::CLONE_NEWUSER) {
            return Err(NamespaceError::RootlessNeedsUserns);
        }
        if plan.new.contains(CloneFlags::CLONE_NEWUSER) && plan.joins(CloneFlags::CLONE_NEWUSER) {
            return Err(NamespaceError::Invalid(
                "user namespace both created and joined".into(),
            ));
        }
        Ok(plan)
    }

    /// Created or joined.
    pub fn has(&self, f: CloneFlags) -> bool {
        self.new.contains(f) || self.joins(f)
    }

    /// Created for the container (not joined): its members are the container's.
    pub fn creates(&self, f: CloneFlags) -> bool {
        self.new.contains(f)
    }

    /// Joined by path.
    pub fn joins(&self, f: CloneFlags) -> bool {
        self.join.iter().any(|(j, _)| *j == f)
    }

    /// Enter the joined namespaces of type `which` (user, or all others).
    pub fn enter(&self, user: bool) -> Result<(), NamespaceError> {
        for (f, fd) in &self.join {
            if (*f == CloneFlags::CLONE_NEWUSER) != user {
                continue;
            }
            // SAFETY: fd is a namespace fd we opened.
            if unsafe { libc::setns(fd.as_raw_fd(), f.bits()) } != 0 {
                return Err(NamespaceError::Join {
                    kind: kind(*f),
                    source: nix::Error::last(),
                });
            }
        }
        Ok(())
    }
}
