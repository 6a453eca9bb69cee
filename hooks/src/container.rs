//! The container a hook runs for: its OCI state, its bundle's `config.json`
//! and the absolute path of its rootfs.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{Spec, State};

use crate::{read_state, HookError};

/// What a hook knows about its container.
#[derive(Debug)]
pub struct Container {
    /// The state the runtime passed on stdin.
    pub state: State,
    /// The bundle's `config.json`.
    pub spec: Spec,
    /// The rootfs, absolute (`root.path` is relative to the bundle when not).
    pub rootfs: PathBuf,
}

impl Container {
    /// Reads the state from stdin and the bundle's `config.json`.
    pub fn from_stdin() -> Result<Self, HookError> {
        Self::from_reader(std::io::stdin().lock())
    }

    /// Reads the state from `input` and the bundle's `config.json`.
    pub fn from_reader(input: impl Read) -> Result<Self, HookError> {
        let state = read_state(input)?;
        let b = berth::config::parse(state.bundle()).map_err(|e| HookError::Config {
            path: state.bundle().join("config.json").display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Container {
            state,
            spec: b.spec,
            rootfs: b.rootfs,
        })
    }

    /// The container init's host pid.
    pub fn pid(&self) -> Result<i32, HookError> {
        self.state.pid().filter(|p| *p > 0).ok_or(HookError::NoPid)
    }

    /// The annotation `key`, from the state (or config.json when the runtime
    /// passed none).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        fn get<'a>(m: &'a Option<HashMap<String, String>>, key: &str) -> Option<&'a str> {
            m.as_ref().and_then(|m| m.get(key)).map(String::as_str)
        }
        get(self.state.annotations(), key).or_else(|| get(self.spec.annotations(), key))
    }

    /// True when annotation `key` is `true`, `1` or `yes`.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.annotation(key), Some("true" | "1" | "yes"))
    }

    /// The container process's variable `name` (from config.json).
    pub fn process_env(&self, name: &str) -> Option<&str> {
        self.spec
            .process()
            .as_ref()?
            .env()
            .as_ref()?
            .iter()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// The container process's uid and gid.
    pub fn user(&self) -> (u32, u32) {
        self.spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()))
            .unwrap_or((0, 0))
    }

    /// Joins the container's mount namespace, where its rootfs and mounts are
    /// set up (createRuntime runs before pivot_root, so the rootfs is still at
    /// [`Container::rootfs`]). Everything the hook mounts afterwards is seen by
    /// the container only.
    pub fn enter_mount_ns(&self) -> Result<(), HookError> {
        let pid = self.pid()?;
        let err = |source| HookError::Setns { pid, source };
        let ns = File::open(format!("/proc/{pid}/ns/mnt")).map_err(err)?;
        setns(&ns, CloneFlags::CLONE_NEWNS).map_err(|e| err(e.into()))?;
        // setns leaves the cwd on the old namespace's tree.
        std::env::set_current_dir("/").map_err(err)?;
        Ok(())
    }

    /// The bundle directory.
    pub fn bundle(&self) -> &Path {
        self.state.bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn state(dir: &Path) -> String {
        format!(
            r#"{{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":7,"bundle":"{}","annotations":{{"com.berth.mpi":"true"}}}}"#,
            dir.display()
        )
    }

    #[test]
    fn reads_bundle_and_resolves_relative_root() {
        let dir = bundle(
            r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":4242,"gid":100},"env":["PATH=/bin","MPI_X=a=b"]},"annotations":{"k":"v"}}"#,
        );
        let c = Container::from_reader(state(dir.path()).as_bytes()).unwrap();
        assert_eq!(c.rootfs, dir.path().join("rootfs"));
        assert_eq!(c.pid().unwrap(), 7);
        assert!(c.flag("com.berth.mpi"));
        assert_eq!(c.annotation("k"), Some("v"));
        assert_eq!(c.process_env("MPI_X"), Some("a=b"));
        assert_eq!(c.process_env("MPI"), None);
        assert_eq!(c.user(), (4242, 100));
    }

    #[test]
    fn missing_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Container::from_reader(state(dir.path()).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
