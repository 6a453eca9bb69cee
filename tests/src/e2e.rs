//! What the end-to-end container tests share: the services, the pushed busybox
//! image, the job user's Slurm commands, and the lock that keeps container
//! steps from overlapping (so [`crate::leaks::assert_clean`] means something).

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::proc::KillOnDrop;
use crate::stack::{self, Stack};
use crate::{paths, user};

/// The running stack, held exclusively for container steps.
pub struct Env {
    /// The services.
    pub stack: Stack,
    /// `<plain registry>/berth-test/busybox:latest`.
    pub image: String,
    _lock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the container-steps lock, then starts (or reuses) the services and
/// pushes the test images.
pub fn env() -> Env {
    let lock = crate::lock::exclusive(&paths::root().join("containers.lock")).unwrap();
    let stack = stack::services().expect("stack starts");
    stack::images(&stack).expect("images are pushed");
    let image = format!("{}/berth-test/busybox:latest", stack.plain.host());
    Env {
        stack,
        image,
        _lock: lock,
    }
}

impl Env {
    /// A Slurm client (or any program) run as the job user, from a directory
    /// it can read.
    pub fn as_user(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = self.stack.cluster.command("/usr/sbin/runuser");
        cmd.args(["-u", user::NAME, "--", program])
            .args(args)
            .current_dir("/tmp");
        cmd
    }

    /// `srun ARGS` as the job user.
    pub fn srun(&self, args: &[&str]) -> Output {
        self.as_user("srun", args).output().expect("srun runs")
    }

    /// The busybox image pushed under `tag` of the caller's own, so that a
    /// test-only hooks.d file can select its steps alone (annotation
    /// `org.opencontainers.image.ref.name` ends in `:TAG`).
    pub fn busybox_tagged(&self, tag: &str) -> String {
        let catalog = stack::images(&self.stack).expect("images are pushed");
        let bb = &catalog.busybox;
        let target = self.stack.plain.push_target();
        crate::image::push::push(&bb.layout_dir, &bb.tag, &target, &bb.repository(), tag)
            .expect("the tag is pushed");
        format!("{}/{}:{tag}", self.stack.plain.host(), bb.repository())
    }
}

/// A fresh directory under `parent` that the job user owns, for files its
/// jobs read or write (`/home/<user>` where both nodes must see it).
pub fn user_dir(parent: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir_in(parent).expect("the directory is made");
    std::os::unix::fs::chown(dir.path(), Some(user::UID), None).expect("the job user owns it");
    dir
}

/// A job that a test started by name (`--job-name`), cancelled when dropped,
/// and the client running it (`srun`), killed and reaped then, so a failing
/// assertion leaves no job running for later tests.
pub struct CancelOnDrop<'a> {
    env: &'a Env,
    name: String,
    /// The client that runs the job, if the test spawned one; dropped (killed
    /// and reaped) after the job is cancelled.
    pub child: Option<KillOnDrop>,
}

impl<'a> CancelOnDrop<'a> {
    /// Guards the job named `name`, run by `child` when there is one.
    pub fn new(env: &'a Env, name: &str, child: Option<Child>) -> Self {
        CancelOnDrop {
            env,
            name: name.into(),
            child: child.map(KillOnDrop),
        }
    }

    /// Waits (up to 30 s) until the job runs; false if it does not start.
    pub fn running(&self) -> bool {
        crate::proc::wait_until(Duration::from_secs(30), || {
            let o = self
                .env
                .stack
                .cluster
                .command("squeue")
                .args(["-h", "-t", "R", "-n", &self.name, "-o", "%i"])
                .output()
                .expect("squeue runs");
            !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        })
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .env
            .stack
            .cluster
            .command("scancel")
            .args(["--name", &self.name])
            .status();
    }
}

/// A test-only hooks.d file (`test-NAME.json`, which
/// [`crate::hooks_d::install`] leaves alone), removed when dropped.
pub struct TestHook(std::path::PathBuf);

impl TestHook {
    /// Installs `hook` (OCI hooks JSON) root-owned and 0644, as the runtime's
    /// trust check requires.
    pub fn install(name: &str, hook: &serde_json::Value) -> Self {
        let path = crate::hooks_d::dir().join(format!("test-{name}.json"));
        crate::fsutil::write_atomic(&path, hook.to_string().as_bytes(), 0o644)
            .expect("the test hook is written");
        TestHook(path)
    }
}

impl Drop for TestHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
