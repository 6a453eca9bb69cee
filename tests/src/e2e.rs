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
