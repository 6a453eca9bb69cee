//! One container per node per step: slurmstepd asks the `berth` binary to make
//! it (pull, mount, create, hooks), pins its namespaces, and every task joins
//! them before it execs. Tasks stay slurmstepd's children, so PMI, signals,
//! accounting and Slurm's cgroups work unchanged.
//!
//! The heavy work runs in a separate `berth` process (fork + exec at once)
//! rather than inside slurmstepd, which is multi-threaded: a fork that keeps
//! running Rust code there could deadlock on a lock held by another thread.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{setns, CloneFlags};
use serde::Deserialize;

use crate::args::PluginArgs;
use crate::facts::StepFacts;
use crate::options::Request;
use crate::spank::JobInfo;
use crate::user::JobUser;

/// Errors making, joining or removing the step's container.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The runtime binary could not be run.
    #[error("cannot run {}: {source}: check runtime= in plugstack.conf", path.display())]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The runtime reported an error (its one-line message).
    #[error("{0}")]
    Runtime(String),
    /// The runtime's answer was not what the plugin expects.
    #[error("unexpected answer from {}: {reason}: the berth binary and plugin versions may differ", path.display())]
    Answer { path: PathBuf, reason: String },
    /// The container's init vanished before its namespaces were pinned.
    #[error("container {0} exited before its tasks could join it")]
    Vanished(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

/// What `berth slurm-create` prints on success.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Created {
    /// Container id in the runtime's state.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// The image's environment (`NAME=VALUE`).
    #[serde(default)]
    pub env: Vec<String>,
    /// The working directory the user asked for (`--container-workdir`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// The image's WorkingDir, used when the job's own directory is not visible.
    #[serde(default)]
    pub image_workdir: Option<String>,
    /// The host GPUs the container holds (its `com.berth.gpus`), which may be
    /// an earlier step's for a named container.
    #[serde(default)]
    pub gpus: Option<String>,
}

/// The namespaces a task joins, in this order (mount last: joining it resets the
/// root and working directory to the container's).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The step's container on this node, with its namespaces pinned by fd so a
/// recycled pid can never send a task into the wrong process's namespaces.
#[derive(Debug)]
pub struct Container {
    /// What the runtime reported.
    pub created: Created,
    /// Open namespace files of the init, only those that differ from ours.
    namespaces: Vec<(CloneFlags, OwnedFd)>,
}

/// The container id for a step (or for a named container, shared by the job's steps).
pub fn container_id(job: &JobInfo, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("slurm-{}-{n}", job.job_id),
        None => format!("slurm-{}.{}", job.job_id, job.step_id),
    }
}

/// The `berth slurm-create` command line for a request.
pub fn create_command(
    args: &PluginArgs,
    req: &Request,
    job: &JobInfo,
    user: &JobUser,
    id: &str,
    script_dir: Option<&Path>,
    facts: &StepFacts,
) -> Command {
    let mut cmd = Command::new(&args.runtime);
    cmd.arg("slurm-create");
    if let Some(config) = &args.config {
        cmd.arg("--config").arg(config);
    }
    cmd.args([
        "--id",
        id,
        "--uid",
        &job.uid.to_string(),
        "--gid",
        &job.gid.to_string(),
    ]);
    cmd.args(user.args());
    // Without an image, a later step joins the job's named container.
    if let Some(image) = &req.image {
        cmd.args(["--image", image]);
    }
    for m in &req.mounts {
        let flag = if m.readonly { ":ro" } else { "" };
        cmd.arg("--mount").arg(format!(
            "{}:{}{flag}",
            m.source.display(),
            m.destination.display()
        ));
    }
    if let Some(w) = &req.workdir {
        cmd.arg("--workdir").arg(w);
    }
    if req.writable == Some(true) {
        cmd.arg("--writable");
    }
    if req.entrypoint == Some(true) {
        cmd.arg("--entrypoint");
    }
    if req.mount_home == Some(false) {
        cmd.arg("--no-mount-home");
    }
    if let Some(mpi) = &req.mpi {
        cmd.args(["--mpi", mpi]);
    }
    if req.ssh {
        cmd.arg("--ssh");
    }
    if let Some(dir) = script_dir {
        cmd.arg("--script-dir").arg(dir);
    }
    for a in facts.annotations(job) {
        cmd.arg("--annotation").arg(a);
    }
    // Not an annotation: the runtime checks the list and sets com.berth.gpus.
    if let Some(g) = &facts.gpus {
        cmd.args(["--gpus", g]);
    }
    cmd
}

/// The runtime's one-line error from its stderr: its last `error:` line, else its
/// last non-empty line.
fn runtime_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains("error: "))
        .or(lines.last())
        .copied()
        .unwrap_or("the runtime failed without a message");
    line.split_once("error: ")
        .map(|(_, m)| m)
        .unwrap_or(line)
        .to_string()
}

fn run(cmd: &mut Command, runtime: &Path) -> Result<Vec<u8>, LaunchError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| LaunchError::Spawn {
            path: runtime.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(LaunchError::Runtime(runtime_error(&out.stderr)))
    }
}

fn pidfd_open(pid: i32) -> Result<OwnedFd, LaunchError> {
    // SAFETY: plain syscall; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(LaunchError::Sys {
            what: format!("pidfd_open({pid})"),
            source: nix::Error::last(),
        });
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// True while the process behind `pidfd` runs (a pidfd polls readable on exit).
fn alive(pidfd: &OwnedFd) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
        Ok(0)
    )
}

impl Container {
    /// Makes the step's container through the runtime and pins its namespaces.
    pub fn create(
        args: &PluginArgs,
        req: &Request,
        job: &JobInfo,
        user: &JobUser,
        script_dir: Option<&Path>,
        facts: &StepFacts,
    ) -> Result<Self, LaunchError> {
        let id = container_id(job, req.name.as_deref());
        let stdout = run(
            &mut create_command(args, req, job, user, &id, script_dir, facts),
            &args.runtime,
        )?;
        // The runtime made the container: from here on, any failure removes it.
        let container = serde_json::from_slice::<Created>(&stdout)
            .map_err(|e| LaunchError::Answer {
                path: args.runtime.clone(),
                reason: e.to_string(),
            })
            .and_then(Self::pin);
        if container.is_err() {
            let _ = delete(args, &id);
        }
        container
    }

    /// Opens the init's namespace files, then checks through a pidfd taken
    /// *before* opening them that the init still runs: if it does, the pid was not
    /// recycled in between and the files are its namespaces.
    fn pin(created: Created) -> Result<Self, LaunchError> {
        let pidfd = pidfd_open(created.pid)?;
        let mut namespaces = Vec::new();
        for (name, flag) in NAMESPACES {
            let theirs = File::open(format!("/proc/{}/ns/{name}", created.pid))
                .map_err(|_| LaunchError::Vanished(created.id.clone()))?;
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
                .map(|m| m.ino())
                .ok();
            let same = theirs
                .metadata()
                .map(|m| Some(m.ino()) == ours)
                .unwrap_or(false);
            if !same {
                namespaces.push((*flag, OwnedFd::from(theirs)));
            }
        }
        if !alive(&pidfd) {
            return Err(LaunchError::Vanished(created.id));
        }
        Ok(Container {
            created,
            namespaces,
        })
    }

    /// Moves the calling task into the container's namespaces and stops it from
    /// ever gaining privileges. Runs in each task before Slurm drops to the user.
    pub fn join(&self) -> Result<(), LaunchError> {
        for (flag, fd) in &self.namespaces {
            setns(fd, *flag).map_err(|source| LaunchError::Sys {
                what: format!(
                    "join the container's {flag:?} namespace (fd {})",
                    fd.as_raw_fd()
                ),
                source,
            })?;
        }
        nix::sys::prctl::set_no_new_privs().map_err(|source| LaunchError::Sys {
            what: "set no_new_privs".into(),
            source,
        })
    }

    /// Sets the task's working directory inside the container: the one the user
    /// asked for, else the job's own (`job_cwd`, taken before joining) when it is
    /// visible inside (a mounted home or scratch), else the image's WorkingDir.
    ///
    /// Runs as the job user after Slurm's own chdir, which cannot see the
    /// container's directories and falls back to /tmp.
    pub fn enter_workdir(&self, job_cwd: Option<&Path>) -> Result<(), LaunchError> {
        let c = &self.created;
        if let Some(dir) = &c.cwd {
            return std::env::set_current_dir(dir).map_err(|e| {
                LaunchError::Runtime(format!("cannot enter --container-workdir {dir}: {e}"))
            });
        }
        let fallbacks = job_cwd
            .map(Path::to_path_buf)
            .into_iter()
            .chain(c.image_workdir.iter().map(PathBuf::from));
        for dir in fallbacks {
            if std::env::set_current_dir(&dir).is_ok() {
                break;
            }
        }
        Ok(())
    }
}

/// Removes every container of a job, named ones included (`berth slurm-delete --job`).
pub fn delete_job(args: &PluginArgs, job_id: u32) -> Result<(), LaunchError> {
    let job = job_id.to_string();
    run(
        Command::new(&args.runtime).args(["slurm-delete", "--job", &job]),
        &args.runtime,
    )
    .map(|_| ())
}

/// Removes a container and its bundle (`berth slurm-delete`); poststop hooks run.
pub fn delete(args: &PluginArgs, id: &str) -> Result<(), LaunchError> {
    run(
        Command::new(&args.runtime).args(["slurm-delete", "--id", id]),
        &args.runtime,
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::{Mount, Request};

    fn job() -> JobInfo {
        JobInfo {
            job_id: 12,
            step_id: 3,
            uid: 4242,
            gid: 4242,
        }
    }

    #[test]
    fn ids_name_the_step_or_the_named_container() {
        assert_eq!(container_id(&job(), None), "slurm-12.3");
        assert_eq!(container_id(&job(), Some("build")), "slurm-12-build");
    }

    #[test]
    fn command_carries_every_request_field() {
        let req = Request {
            image: Some("reg/img:1".into()),
            mounts: vec![Mount {
                source: "/s".into(),
                destination: "/d".into(),
                readonly: true,
            }],
            workdir: Some("/w".into()),
            writable: Some(true),
            mount_home: Some(false),
            mpi: Some("pmi2".into()),
            ssh: true,
            ..Request::default()
        };
        let cmd = create_command(
            &PluginArgs::default(),
            &req,
            &job(),
            &JobUser {
                name: Some("ann".into()),
                groups: vec![(4242, "ann".into())],
                supplementary: vec![4243, 27],
                ..JobUser::default()
            },
            "slurm-12.3",
            Some(Path::new("/spool/job12")),
            &StepFacts {
                nnodes: Some(2),
                gpus: Some("0,1".into()),
                ..StepFacts::default()
            },
        );
        let argv: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv.join(" "),
            "slurm-create --id slurm-12.3 --uid 4242 --gid 4242 --groups 4243,27 \
             --user-name ann --group-name 4242=ann --image reg/img:1 --mount /s:/d:ro --workdir /w --writable --no-mount-home --mpi pmi2 --ssh --script-dir /spool/job12 \
             --annotation com.berth.slurm.job_id=12 --annotation com.berth.slurm.step_id=3 \
             --annotation com.berth.slurm.nnodes=2 --gpus 0,1"
        );
    }

    #[test]
    fn runtime_errors_keep_the_last_line() {
        assert_eq!(
            runtime_error(b"progress\nberth: error: pull x: 404\n\n"),
            "pull x: 404"
        );
        assert_eq!(runtime_error(b""), "the runtime failed without a message");
        let clap = b"error: unrecognized subcommand 'x'\n\nUsage: berth <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(runtime_error(clap), "unrecognized subcommand 'x'");
        assert_eq!(runtime_error(b"plain failure\n"), "plain failure");
    }

    #[test]
    fn pinning_a_dead_pid_fails_cleanly() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        let err = Container::pin(Created {
            id: "c".into(),
            pid,
            env: vec![],
            cwd: None,
            image_workdir: None,
            gpus: None,
        })
        .unwrap_err();
        assert!(
            matches!(err, LaunchError::Sys { .. } | LaunchError::Vanished(_)),
            "{err}"
        );
    }

    #[test]
    fn pinning_a_live_process_keeps_only_foreign_namespaces() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let c = Container::pin(Created {
            id: "c".into(),
            pid: child.id() as i32,
            env: vec![],
            cwd: None,
            image_workdir: None,
            gpus: None,
        })
        .unwrap();
        // A plain child shares all our namespaces: nothing to join.
        assert!(c.namespaces.is_empty());
        let _ = child.kill();
        let _ = child.wait();
    }
}
