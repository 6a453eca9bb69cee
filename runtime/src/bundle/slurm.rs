//! The container of one Slurm step on one node, made for the SPANK plugin.
//!
//! `berth slurm-create` mounts the image, writes a bundle whose only namespace
//! is the mount namespace (tasks must stay in the host's pid, network and IPC
//! namespaces for Slurm's signals, PMI and interconnects), and creates the
//! container without starting it: the init, blocked on its exec fifo after
//! pivot_root, holds the namespaces that every task joins. No program from the
//! image runs and no binary of ours is needed inside it.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, MountBuilder, Spec};
use serde::Serialize;

/// The file in a step container's bundle recording what `create` printed, so a
/// named container can be handed to later steps of the job.
const STEP_FILE: &str = "step.json";

use super::run::mount_image;
use super::spec::{self, UserOptions};
use super::BundleError;
use crate::cli::image::Common;
use crate::cli::image_run::{bundles_dir, PullPolicy};
use crate::container::{self, CreateOpts};
use crate::site::SiteConfig;

/// What the plugin asks for.
#[derive(Debug, Clone, Default)]
pub struct StepRequest {
    /// Container id (`slurm-JOB.STEP` or `slurm-JOB-NAME`).
    pub id: String,
    /// The image reference or digest; `None` to join an existing named
    /// container only (`--container-name` without `--container-image`).
    pub image: Option<String>,
    /// The job user's uid, primary gid and supplementary gids.
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The job user's passwd entry and group names, as slurmstepd's NSS saw
    /// them (the plugin looks them up once per step): berth itself does no
    /// passwd or group lookups, so a static build needs no NSS modules.
    pub identity: Identity,
    /// `SRC:DST[:ro]` user mounts, checked against the site policy.
    pub mounts: Vec<String>,
    /// `--container-workdir`.
    pub workdir: Option<String>,
    /// Writable overlay root.
    pub writable: bool,
    /// Bind-mount the user's home (the default).
    pub mount_home: bool,
    /// Annotations for hooks.d selection: the feature flags
    /// (`com.berth.mpi`, `.ssh`, `.gpus`) and the step's facts
    /// (`com.berth.slurm.*`).
    pub annotations: Vec<(String, String)>,
    /// The batch script's directory (slurmd's spool), bound read-only at the
    /// same path so slurmstepd can exec the script inside the container.
    pub script_dir: Option<PathBuf>,
    /// Run the image's entrypoint once after creating the container.
    pub entrypoint: bool,
}

/// The job user's names, looked up by the plugin. Every field is optional:
/// what is missing is simply not added to the container's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Login name.
    pub name: Option<String>,
    /// Home directory (bound into the container unless `--no-mount-home`).
    pub home: Option<PathBuf>,
    /// Login shell.
    pub shell: Option<String>,
    /// Names of the primary and supplementary groups, by gid.
    pub groups: Vec<(u32, String)>,
}

/// What `slurm-create` prints for the plugin (one JSON object).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StepContainer {
    /// Container id.
    pub id: String,
    /// Host pid of the init holding the namespaces.
    pub pid: i32,
    /// The image's environment after the site's rules (`NAME=VALUE`).
    pub env: Vec<String>,
    /// The working directory the user asked for, if any.
    pub cwd: Option<String>,
    /// The image's working directory, used when the job's own is not visible.
    pub image_workdir: Option<String>,
    /// The slurmstepd that asked for the container, as (pid, start time): a step
    /// container whose slurmstepd is gone (killed) is a leftover.
    #[serde(default)]
    pub owner: Option<(i32, u64)>,
    /// The host GPUs the container holds (`com.berth.gpus` at creation): a
    /// later step joining a named container must bind its tasks to these.
    #[serde(default)]
    pub gpus: Option<String>,
}

/// The start time of a live process, to record a container's owner.
fn start_time(pid: i32) -> Option<u64> {
    crate::state::proc_stat(pid)
        .filter(|(state, _)| *state != b'Z' && *state != b'X')
        .map(|(_, start)| start)
}

/// True for a named container's id (`slurm-JOB-NAME`), false for a step's
/// (`slurm-JOB.STEP`): decided at the first separator after the job id, since
/// names may themselves contain dots.
fn is_named(id: &str) -> bool {
    let rest = id.strip_prefix("slurm-").unwrap_or(id);
    rest.trim_start_matches(|c: char| c.is_ascii_digit())
        .starts_with('-')
}

/// True for the container of a `berth run` whose berth process is gone
/// (killed): the id names its pid, and a live process with that pid started
/// after the container is a reuse of the number.
fn run_orphan(id: &str, state: &crate::state::State) -> bool {
    let Some(pid) = id
        .strip_prefix("berth-run-")
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    !start_time(pid).is_some_and(|t| t <= state.start_time)
}

/// Removes step containers left by a killed slurmstepd (their owner is gone),
/// containers of a killed `berth run`, and containers whose init died. Named
/// containers belong to their job until its epilog. Returns the ids removed; a
/// container that cannot be removed is logged and skipped so one bad entry
/// never blocks the others. `except` is left alone: the caller deals with it
/// under its creation lock.
pub fn delete_stale(except: Option<&str>) -> Vec<String> {
    let root = crate::state::default_root();
    let ids: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("slurm-") || n.starts_with("berth-run-"))
        .filter(|n| Some(n.as_str()) != except)
        .collect();
    let mut removed = Vec::new();
    for id in ids {
        let Ok(state) = crate::state::State::load(&root, &id) else {
            continue;
        };
        if run_orphan(&id, &state) {
            match delete(&id) {
                Ok(()) => removed.push(id),
                Err(e) => tracing::warn!(id = %id, error = %e, "cannot remove a stale container"),
            }
            continue;
        }
        if id.starts_with("berth-run-") {
            continue; // its berth still runs and cleans up itself
        }
        let dead = state.status(&root) == crate::state::Status::Stopped;
        let file = bundles_dir().join(&id).join(STEP_FILE);
        let step: Option<StepContainer> = std::fs::read(&file)
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok());
        let orphan = !is_named(&id)
            && step
                .and_then(|s| s.owner)
                .is_some_and(|(pid, start)| !crate::state::process_alive(pid, start));
        if dead || orphan {
            match delete(&id) {
                Ok(()) => removed.push(id),
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "cannot remove a stale step container")
                }
            }
        }
    }
    for lock in remove_free_id_locks(&bundles_dir(), except) {
        tracing::info!(lock = %lock.display(), "removed the lock of a killed slurm-create");
    }
    removed
}

/// Removes the creation locks ([`id_lock_path`]) in `dir` that nobody holds:
/// a `slurm-create` killed while creating leaves its file behind, while a live
/// one holds its lock until it removes the file itself. `except`'s lock is the
/// caller's to take. Returns the files removed.
fn remove_free_id_locks(dir: &Path, except: Option<&str>) -> Vec<PathBuf> {
    let names = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok());
    let mut removed = Vec::new();
    for name in names {
        let id = name.strip_prefix('.').and_then(|n| n.strip_suffix(".lock"));
        if !id.is_some_and(|id| id.starts_with("slurm-") && Some(id) != except) {
            continue;
        }
        let path = dir.join(&name);
        match crate::store::lock::remove_if_free(&path) {
            Ok(true) => removed.push(path),
            Ok(false) => {} // held: that container is being created now
            Err(e) => tracing::warn!(
                lock = %path.display(),
                error = %e,
                "cannot check a creation lock: remove it once no step creates that container"
            ),
        }
    }
    removed
}

/// The image's `/etc/{passwd,group}` plus the job user's entries, so `id` and
/// `whoami` work inside. Written into the bundle and bind-mounted read-only.
fn identity_files(
    rootfs: &Path,
    bundle: &Path,
    r: &StepRequest,
) -> Result<Vec<(PathBuf, &'static str)>, BundleError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Io { what, path, source }
    };
    let mut files = Vec::new();
    let id = &r.identity;
    for (name, line_for) in [("passwd", 0), ("group", 1)] {
        let inside = rootfs.join("etc").join(name);
        if !inside.is_file() {
            continue; // a read-only image without the file: nothing to bind over
        }
        let mut text = std::fs::read_to_string(&inside).map_err(io("cannot read", &inside))?;
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if line_for == 0 {
            if let Some(name) = id.name.as_ref().filter(|_| !has_id(&text, r.uid)) {
                let home = id.home.as_deref().unwrap_or(Path::new("/"));
                let shell = id.shell.as_deref().unwrap_or("/bin/sh");
                text.push_str(&format!(
                    "{name}:x:{}:{}::{}:{shell}\n",
                    r.uid,
                    r.gid,
                    home.display()
                ));
            }
        } else {
            let members = id.name.clone().unwrap_or_default();
            for (gid, name) in &id.groups {
                if !has_id(&text, *gid) {
                    text.push_str(&format!("{name}:x:{gid}:{members}\n"));
                }
            }
        }
        let out = bundle.join(format!("etc-{name}"));
        std::fs::write(&out, text).map_err(io("cannot write", &out))?;
        files.push((
            out,
            if line_for == 0 {
                "/etc/passwd"
            } else {
                "/etc/group"
            },
        ));
    }
    Ok(files)
}

/// True when a passwd/group text has an entry with this numeric id (third field).
fn has_id(text: &str, id: u32) -> bool {
    let id = id.to_string();
    text.lines()
        .any(|l| l.split(':').nth(2) == Some(id.as_str()))
}

fn ro_bind(src: &Path, dst: &str) -> Result<oci_spec::runtime::Mount, BundleError> {
    MountBuilder::default()
        .destination(dst)
        .typ("bind")
        .source(src)
        .options(vec![
            "bind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
        ])
        .build()
        .map_err(|e| BundleError::Invalid(format!("mount {dst}: {e}")))
}

/// Adapts the generic run spec to a step container.
fn step_spec(
    mut spec: Spec,
    r: &StepRequest,
    identity: &[(PathBuf, &'static str)],
) -> Result<Spec, BundleError> {
    let mut linux = spec.linux().clone().unwrap_or_default();
    let ns = linux.namespaces().clone().unwrap_or_default();
    linux.set_namespaces(Some(
        ns.into_iter()
            .filter(|n| n.typ() == LinuxNamespaceType::Mount)
            .collect(),
    ));
    spec.set_linux(Some(linux));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (src, dst) in identity {
        mounts.push(ro_bind(src, dst)?);
    }
    if let Some(dir) = &r.script_dir {
        mounts.push(ro_bind(dir, &dir.display().to_string())?);
    }
    spec.set_mounts(Some(mounts));
    let mut process = spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    user.set_additional_gids(Some(r.groups.clone()));
    process.set_user(user);
    process.set_no_new_privileges(Some(true));
    // The init never execs, but the entrypoint (`--container-entrypoint`) does,
    // in the host's pid namespace: the job user keeps no capability.
    process.set_capabilities(Some(crate::caps::none()));
    spec.set_process(Some(process));
    Ok(spec)
}

/// Runs `f` with stdin, stdout and stderr on /dev/null, restoring them after.
///
/// The container's init inherits the caller's stdio (runc semantics, so
/// `create` and `start` can hand a terminal over). A step container's init only holds
/// namespaces; if it kept the plugin's pipes, the plugin would wait forever for
/// their end.
fn with_null_stdio<T>(f: impl FnOnce() -> T) -> std::io::Result<T> {
    with_stdio(None, f)
}

/// Runs `f` with stdin on /dev/null and stdout and stderr on `out` (also
/// /dev/null when `None`), restoring all three after.
fn with_stdio<T>(out: Option<&std::fs::File>, f: impl FnOnce() -> T) -> std::io::Result<T> {
    use std::os::fd::IntoRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    let out = out.unwrap_or(&null);
    let saved: Vec<(i32, std::os::fd::OwnedFd)> = [0, 1, 2]
        .into_iter()
        .map(|fd| {
            // SAFETY: borrowing our own standard fd just long enough to duplicate it.
            let dup = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
            Ok((fd, dup))
        })
        .collect::<std::io::Result<_>>()?;
    for (fd, to) in [(0, &null), (1, out), (2, out)] {
        // SAFETY: 0, 1 and 2 are ours to replace; nothing holds them across this call.
        let _ = unsafe { nix::unistd::dup2_raw(to, fd) }?.into_raw_fd();
    }
    let out = f();
    for (fd, dup) in &saved {
        // SAFETY: as above, putting the originals back.
        let _ = unsafe { nix::unistd::dup2_raw(dup, *fd) }?.into_raw_fd();
    }
    Ok(out)
}

/// A running container of this id made by an earlier step (a named container),
/// or `None` when there is none or it died (then its leftovers are removed).
fn existing(id: &str) -> Result<Option<StepContainer>, BundleError> {
    let root = crate::state::default_root();
    let Ok(state) = crate::state::State::load(&root, id) else {
        return Ok(None);
    };
    let file = bundles_dir().join(id).join(STEP_FILE);
    if state.status(&root) == crate::state::Status::Stopped || !file.is_file() {
        delete(id)?;
        return Ok(None);
    }
    let text = std::fs::read(&file).map_err(|source| BundleError::Io {
        what: "cannot read",
        path: file.clone(),
        source,
    })?;
    let mut step: StepContainer = serde_json::from_slice(&text).map_err(|e| {
        BundleError::Invalid(format!(
            "{}: {e}: remove the container with berth slurm-delete --id {id}",
            file.display()
        ))
    })?;
    step.pid = state.pid;
    Ok(Some(step))
}

/// The lock file serialising the creation of container `id`: a dotfile next to
/// its bundle, so no scan of the bundles or state directories mistakes it for
/// a container.
fn id_lock_path(id: &str) -> PathBuf {
    bundles_dir().join(format!(".{id}.lock"))
}

/// Takes `id`'s creation lock, waiting up to `timeout_s` (a first step may be
/// pulling the image).
fn id_lock(id: &str, timeout_s: u64) -> Result<crate::store::lock::Lock, BundleError> {
    let path = id_lock_path(id);
    let io = |source| BundleError::Io {
        what: "cannot lock",
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(bundles_dir()).map_err(io)?;
    crate::store::lock::lock(&path, std::time::Duration::from_secs(timeout_s))
        .map_err(io)?
        .ok_or_else(|| {
            BundleError::Runtime(format!(
                "another step has been creating container {id} for over {timeout_s} s: \
                 check that step, or raise store.lock_timeout_s"
            ))
        })
}

/// Makes the step's container; on any failure nothing is left behind.
pub fn create(
    site: &SiteConfig,
    common: &Common,
    r: &StepRequest,
) -> Result<StepContainer, BundleError> {
    // Leftovers of killed steps go first: a later step cleans up after them.
    for id in delete_stale(Some(&r.id)) {
        tracing::info!(id = %id, "removed a stale step container");
    }
    // Two steps of a job may ask for the same named container at once: the
    // first creates it while the other waits, then finds and joins it. Only
    // the holder removes the lock file, and only once done (success or not):
    // a waiter then retries on a fresh file (lock.rs re-checks the inode).
    let lock = id_lock(&r.id, site.store.lock_timeout_s)?;
    let made = existing(&r.id).and_then(|step| match (step, &r.image) {
        (Some(step), _) => Ok(step),
        (None, Some(image)) => create_locked(site, common, r, image),
        (None, None) => Err(BundleError::Invalid(format!(
            "container {} does not exist on this node: the first step that uses --container-name needs --container-image",
            r.id
        ))),
    });
    lock.remove();
    made
}

/// [`create`] once the creation lock is held and no container exists.
fn create_locked(
    site: &SiteConfig,
    common: &Common,
    r: &StepRequest,
    image: &str,
) -> Result<StepContainer, BundleError> {
    // Always under a tmpfs overlay: bind mounts (home, scratch, the user's) need
    // mount points the read-only image may lack. The root is still remounted
    // read-only unless the user asked for --container-writable.
    let mounted = mount_image(site, common, image, PullPolicy::Missing, true, &r.id)?;
    let mut mounts = r.mounts.clone();
    if r.mount_home {
        if let Some(home) = r.identity.home.as_ref().filter(|h| h.is_dir()) {
            let home = home.display().to_string();
            mounts.push(format!("{home}:{home}"));
        }
    }
    let opts = UserOptions {
        mounts,
        workdir: r.workdir.clone(),
        // The init never runs a program: it only holds the namespaces.
        command: vec!["/bin/true".into()],
        entrypoint: Some(String::new()),
        writable: r.writable,
        annotations: r.annotations.clone(),
        ..UserOptions::default()
    };
    let identity = identity_files(&mounted.rootfs, &mounted.bundle, r)?;
    let spec = step_spec(
        spec::build(&mounted.img, site, &opts, (r.uid, r.gid))?,
        r,
        &identity,
    )?;
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    let config = mounted.bundle.join("config.json");
    spec.save(&config)
        .map_err(|e| BundleError::Invalid(format!("cannot write {}: {e}", config.display())))?;
    let opts = CreateOpts {
        root: crate::state::default_root(),
        id: r.id.clone(),
        bundle: mounted.bundle.clone(),
        ..Default::default()
    };
    let created = with_null_stdio(|| container::create::create(&opts))
        .map_err(|e| BundleError::Runtime(format!("create {}: {e}", r.id)))?
        .map_err(|e| BundleError::Runtime(format!("create {}: {e}", r.id)))?;
    let out = StepContainer {
        id: r.id.clone(),
        pid: created.pid,
        env,
        cwd: r.workdir.clone(),
        image_workdir: mounted.img.working_dir.clone().filter(|w| !w.is_empty()),
        owner: {
            let parent = nix::unistd::getppid().as_raw();
            start_time(parent).map(|t| (parent, t))
        },
        gpus: r
            .annotations
            .iter()
            .find(|(k, _)| k == "com.berth.gpus")
            .map(|(_, v)| v.clone()),
    };
    // From here the container exists: any failure deletes it (the bundle's
    // mounts go with `mounted`).
    let finish = || -> Result<(), BundleError> {
        if r.entrypoint {
            let ep = mounted.img.entrypoint.as_deref();
            run_entrypoint(&spec, &mounted.bundle, r, image, ep)?;
        }
        let step_file = mounted.bundle.join(STEP_FILE);
        let json = serde_json::to_vec(&out).map_err(|e| BundleError::Invalid(e.to_string()))?;
        std::fs::write(&step_file, json).map_err(|source| BundleError::Io {
            what: "cannot write",
            path: step_file,
            source,
        })
    };
    if let Err(e) = finish() {
        let _ = container::delete::delete(&crate::state::default_root(), &r.id, true);
        return Err(e);
    }
    mounted.keep();
    Ok(out)
}

/// Runs the image's ENTRYPOINT (with `true` as its command, so the usual
/// `exec "$@"` ending returns) once in the created container, as the job user
/// with the container's environment and working directory. Its output goes to
/// `entrypoint.log` in the bundle; a failure names its exit status and last
/// line. An image without an entrypoint has nothing to run.
fn run_entrypoint(
    spec: &Spec,
    bundle: &Path,
    r: &StepRequest,
    image: &str,
    entrypoint: Option<&[String]>,
) -> Result<(), BundleError> {
    let Some(ep) = entrypoint.filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let mut process = spec.process().clone().unwrap_or_default();
    let mut args = ep.to_vec();
    args.push("true".into());
    process.set_args(Some(args));
    let log = bundle.join("entrypoint.log");
    let io = |source| BundleError::Io {
        what: "cannot write",
        path: log.clone(),
        source,
    };
    let out = std::fs::File::create(&log).map_err(io)?;
    let opts = crate::container::exec::ExecOpts {
        process: Some(process),
        ..Default::default()
    };
    let root = crate::state::default_root();
    let code = with_stdio(Some(&out), || container::exec::exec(&root, &r.id, opts))
        .map_err(io)?
        .map_err(|e| BundleError::Runtime(format!("entrypoint of {image}: {e}")))?;
    if code != 0 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let last = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(BundleError::Runtime(format!(
            "the entrypoint {} of {} exited with status {code}: {last}",
            ep.join(" "),
            image
        )));
    }
    Ok(())
}

/// Removes every container of a job: its named containers and the step
/// containers a killed slurmstepd could not remove. Returns the ids removed.
pub fn delete_job(job: u32) -> Result<Vec<String>, BundleError> {
    let prefixes = [format!("slurm-{job}."), format!("slurm-{job}-")];
    let mut ids: Vec<String> = [crate::state::default_root(), bundles_dir()]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
        .collect();
    ids.sort();
    ids.dedup();
    for id in &ids {
        delete(id)?;
    }
    Ok(ids)
}

/// Removes the step's container (poststop hooks run) and its bundle.
pub fn delete(id: &str) -> Result<(), BundleError> {
    let root = crate::state::default_root();
    let result = match crate::state::State::load(&root, id) {
        Ok(_) => container::delete::delete(&root, id, true)
            .map_err(|e| BundleError::Runtime(format!("delete {id}: {e}"))),
        Err(_) => Ok(()), // already gone: deleting twice is not an error
    };
    let bundle = bundles_dir().join(id);
    // A rootless `berth run` mounts its image with squashfuse on the host: a
    // killed one leaves that mount (and its squashfuse) behind.
    // Unconditionally: a dead FUSE mount (its squashfuse killed) fails every
    // stat with ENOTCONN, so it cannot be recognised as a mount point, and
    // `fusermount3 -u -z` on a plain directory is harmless. (The bundle, not
    // the mount point, is stat'ed.)
    if !nix::unistd::geteuid().is_root() && bundle.is_dir() {
        super::mount::unmount(&bundle.join("rootfs"), true);
    }
    if bundle.exists() {
        std::fs::remove_dir_all(&bundle).map_err(|source| BundleError::Io {
            what: "cannot remove",
            path: bundle,
            source,
        })?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::{is_named, remove_free_id_locks};
    use std::io::BufRead;

    #[test]
    fn free_creation_locks_go_held_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let lock = |id: &str| dir.path().join(format!(".{id}.lock"));
        // A killed slurm-create's: the file, and no holder.
        std::fs::write(lock("slurm-1.0"), "").unwrap();
        // The caller's own, and a lock that is not a container's.
        std::fs::write(lock("slurm-3.0"), "").unwrap();
        std::fs::write(lock("other"), "").unwrap();
        // Held by another process, as by a step creating its container: the
        // shell's fd 9 keeps the lock once flock(1) has taken it, and stays
        // open in the exec'd sleep, so one process holds it.
        let script = format!(
            "exec 9>'{}' && flock 9 && echo held && exec sleep 60",
            lock("slurm-2.0").display()
        );
        let mut holder = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let removed = remove_free_id_locks(dir.path(), Some("slurm-3.0"));
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(line.trim(), "held");
        assert_eq!(removed, [lock("slurm-1.0")]);
        assert!(!lock("slurm-1.0").exists());
        assert!(lock("slurm-2.0").exists(), "a held lock must stay");
        assert!(lock("slurm-3.0").exists() && lock("other").exists());
    }

    #[test]
    fn named_and_step_ids_are_told_apart_even_with_dots_in_names() {
        assert!(is_named("slurm-12-build"));
        assert!(is_named("slurm-12-v1.0"));
        assert!(!is_named("slurm-12.0"));
        assert!(!is_named("slurm-12.4294967291"));
    }
}
