//! The README's demo job, run on the harness's cluster.
//!
//! berth's SPANK plugin does not yet offer `--container-image` (that lands with
//! the plugin issue), so for now the demo is the cluster smoke test: a two-task
//! step through the real slurmctld/slurmd with the plugin loaded from plugstack.conf.

use std::process::Command;

use crate::cluster::ClusterError;
use crate::stack::{Stack, StackError};

/// Runs the demo step and prints what it printed.
pub fn run(stack: &Stack) -> Result<(), StackError> {
    let mut srun = stack.cluster.command("srun");
    srun.args([
        "-N1",
        "-n2",
        "--label",
        "sh",
        "-c",
        "echo \"task $SLURM_PROCID of $SLURM_NTASKS on $(hostname)\"",
    ]);
    println!(
        "$ srun -N1 -n2 --label sh -c 'echo task $SLURM_PROCID of $SLURM_NTASKS on $(hostname)'"
    );
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
