//! Container state under `--root`: one directory per container holding
//! `state.json` and, until `start`, the `exec.fifo` the init blocks on.
//! Status is derived from the live process, so a dead pid reads "stopped"
//! even when no berth process was around to see it die.

use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors about the state root or a container's state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '.', '_', '-'")]
    BadId(String),
    #[error("state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Lifecycle status as the OCI spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// User process started.
    Running,
    /// Init process gone.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        })
    }
}

/// What berth persists about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// OCI version of the config.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot), to detect pid reuse.
    pub start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Annotations from the config.
    pub annotations: HashMap<String, String>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Uid that created the container.
    pub owner: u32,
    /// Hooks still to run at start (poststart) and delete (poststop).
    pub hooks: Option<Hooks>,
    /// Cgroup directories the container's processes are in.
    pub cgroups: Vec<PathBuf>,
    /// The subset berth created and removes at delete.
    #[serde(default)]
    pub cgroups_created: Vec<PathBuf>,
    /// Their parents berth created, outermost first: removed at delete unless
    /// another container's cgroup is in them.
    #[serde(default)]
    pub cgroup_parents_created: Vec<PathBuf>,
    /// Whether the container has its own pid namespace (kill --all, delete).
    pub own_pidns: bool,
    /// Whether the container created its own mount namespace: without a pid
    /// namespace or cgroup, its members are the processes in that namespace.
    #[serde(default)]
    pub own_mntns: bool,
    /// What `start` waits for once it has released the init.
    #[serde(default)]
    pub start_wait: StartWait,
}

/// What `start` waits for once it has released the init (decided at
/// create from the config, so a config edited later cannot change it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartWait {
    /// Nothing: all the init has left to do is execve (whose failure ends
    /// the container with 127 and the reason on its stderr).
    Nothing,
    /// The init's verdict: `0`, or `E<message>` when startContainer hooks
    /// or the process identity, taken after `start`, failed.
    Verdict,
    /// The execve itself (EOF on the close-on-exec fifo): poststart hooks
    /// run after the program started. Also what a state file written before
    /// this field existed gets.
    #[default]
    Exec,
}

/// The OCI `state` output.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    /// Spec version.
    pub oci_version: &'a str,
    /// Container id.
    pub id: &'a str,
    /// Status now.
    pub status: Status,
    /// Init pid (0 once stopped, as runc reports).
    pub pid: i32,
    /// Bundle path.
    pub bundle: &'a Path,
    /// Rootfs path (runc extension many clients read).
    pub rootfs: &'a Path,
    /// Creation time (runc extension).
    pub created: &'a str,
    /// Owner (runc extension).
    pub owner: String,
    /// Annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

/// Default state root: /run/berth for root, `$XDG_RUNTIME_DIR/berth` otherwise.
pub fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/berth");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("berth"),
        _ => PathBuf::from(format!("/tmp/berth-{}", nix::unistd::geteuid())),
    }
}

/// Reject ids that could escape the state root.
pub fn check_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(StateError::BadId(id.into()))
    }
}

/// Directory of one container.
pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Path of the exec fifo of a container.
pub fn fifo_path(root: &Path, id: &str) -> PathBuf {
    dir(root, id).join("exec.fifo")
}

/// Present while `create` is still building a container whose state it has
/// already recorded (it records the state while the init builds the rootfs).
pub fn creating_path(root: &Path, id: &str) -> PathBuf {
    dir(root, id).join("creating")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.into(),
        source,
    }
}

/// Create the container directory; fails if the id is taken. mkdir is the
/// atomic claim, so two concurrent creates of one id cannot both succeed.
pub fn claim(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    check_id(id)?;
    use std::os::unix::fs::DirBuilderExt;
    if !root.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io(root))?;
    }
    let d = dir(root, id);
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::Exists(id.into()))
        }
        Err(e) => Err(io(&d)(e)),
    }
}

impl State {
    /// Persist atomically (write + rename) so readers never see half a file.
    pub fn save(&self, root: &Path) -> Result<(), StateError> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        let data = serde_json::to_vec(self).expect("state serializes");
        std::fs::write(&tmp, data).map_err(io(&tmp))?;
        let dst = d.join("state.json");
        std::fs::rename(&tmp, &dst).map_err(io(&dst))
    }

    /// Load the state of `id`.
    pub fn load(root: &Path, id: &str) -> Result<State, StateError> {
        check_id(id)?;
        let p = dir(root, id).join("state.json");
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(id.into()))
            }
            Err(e) => return Err(io(&p)(e)),
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Corrupt { path: p, source })
    }

    /// Live status: the init must exist with the recorded start time and not
    /// be a zombie; the fifo tells created from running.
    pub fn status(&self, root: &Path) -> Status {
        if !process_alive(self.pid, self.start_time) {
            return Status::Stopped;
        }
        if creating_path(root, &self.id).exists() {
            Status::Creating
        } else if fifo_path(root, &self.id).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// The OCI view of this state.
    pub fn oci(&self, status: Status) -> OciState<'_> {
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: String::new(),
            annotations: &self.annotations,
        }
    }

    /// Remove the state directory.
    pub fn remove(root: &Path, id: &str) -> Result<(), StateError> {
        let d = dir(root, id);
        match std::fs::remove_dir_all(&d) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&d)(e)),
            _ => Ok(()),
        }
    }
}

/// Read state letter and start time of a pid from the kernel's
/// /proc/<pid>/stat (fields 3 and 22; the command name may hold spaces and
/// parentheses, so we split after the last ')').
pub fn proc_stat(pid: i32) -> Option<(u8, u64)> {
    let data = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = data.iter().rposition(|&c| c == b')')?;
    let rest = std::str::from_utf8(&data[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.as_bytes()[0];
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether `pid` is the same live (non-zombie) process we recorded.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((state, start)) => state != b'Z' && state != b'X' && start == start_time,
        None => false,
    }
}
