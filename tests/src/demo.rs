//! The README's demo job: a containerized step on the harness's cluster, run as
//! the unprivileged test user, showing it runs inside the image.

use std::process::Command;

use crate::cluster::ClusterError;
use crate::stack::{Stack, StackError};
use crate::user;

/// Runs the demo step and prints what it printed.
pub fn run(stack: &Stack) -> Result<(), StackError> {
    let image = format!("{}/berth-test/busybox:latest", stack.plain.host());
    let script = "echo \"task $SLURM_PROCID of $SLURM_NTASKS: $(grep ^PRETTY_NAME= /etc/os-release) as $(whoami)\"";
    println!(
        "$ srun -n2 --container-image={image} sh -c '{script}'   # as user {}",
        user::NAME
    );
    let mut srun = stack.cluster.command("/usr/sbin/runuser");
    srun.args(["-u", user::NAME, "--", "srun", "-n2", "--label"])
        .arg(format!("--container-image={image}"))
        .args(["sh", "-c", script])
        .current_dir("/tmp");
    step(srun)
}

fn step(mut cmd: Command) -> Result<(), StackError> {
    let status = cmd.status().map_err(|source| ClusterError::Io {
        path: "srun".into(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ClusterError::Step(status.to_string()).into())
    }
}
