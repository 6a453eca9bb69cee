//! What the end-to-end container tests share: the services, the pushed busybox
//! image, the job user's Slurm commands, and the lock that keeps container
//! steps from overlapping (so [`crate::leaks::assert_clean`] means something).

use std::process::{Command, Output};

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
}

impl Env {
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
