//! The step's facts that hooks.d files select on (job, step, node, node count,
//! node list, restart count, user), passed to `berth slurm-create` as
//! `--annotation` values, and the step's GPUs (passed as `--gpus`, which the
//! runtime checks before it sets `com.berth.gpus`). The table of names is in
//! docs/hooks.md.

use crate::spank::JobInfo;

/// Facts about the step on this node that hooks.d files select on, passed to
/// the runtime as annotations (table in docs/hooks.md). Each is optional: a
/// fact Slurm does not give is left out rather than guessed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepFacts {
    /// This node's index in the step (`SLURM_NODEID`).
    pub node_id: Option<u32>,
    /// Nodes in the step (`SLURM_STEP_NUM_NODES`).
    pub nnodes: Option<u32>,
    /// The step's nodes (`SLURM_STEP_NODELIST`, compressed form).
    pub nodelist: Option<String>,
    /// How many times the job was requeued (`SLURM_RESTART_COUNT`).
    pub restart_count: Option<u32>,
    /// The job user's name.
    pub user: Option<String>,
    /// Host GPU indices of the step (`SLURM_STEP_GPUS`, else `SLURM_JOB_GPUS`
    /// in the batch step; see `gpus::host_gpus`).
    pub gpus: Option<String>,
}

impl StepFacts {
    /// `KEY=VALUE` annotations for `--annotation`.
    pub fn annotations(&self, job: &JobInfo) -> Vec<String> {
        let slurm = |k: &str, v: &dyn std::fmt::Display| format!("com.berth.slurm.{k}={v}");
        let mut out = vec![
            slurm("job_id", &job.job_id),
            slurm("step_id", &crate::spank::step_name(job.step_id)),
        ];
        let numbers = [
            ("node_id", self.node_id),
            ("nnodes", self.nnodes),
            ("restart_count", self.restart_count),
        ];
        for (k, v) in numbers {
            if let Some(v) = v {
                out.push(slurm(k, &v));
            }
        }
        for (k, v) in [("nodelist", &self.nodelist), ("user", &self.user)] {
            if let Some(v) = v {
                out.push(slurm(k, v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_facts_become_annotations_with_slurm_step_names() {
        let batch = JobInfo {
            step_id: crate::spank::BATCH_STEP,
            job_id: 12,
            uid: 1,
            gid: 1,
        };
        let facts = StepFacts {
            node_id: Some(0),
            nnodes: Some(4),
            nodelist: Some("n[1-4]".into()),
            restart_count: Some(1),
            user: Some("alice".into()),
            gpus: None,
        };
        assert_eq!(
            facts.annotations(&batch),
            [
                "com.berth.slurm.job_id=12",
                "com.berth.slurm.step_id=batch",
                "com.berth.slurm.node_id=0",
                "com.berth.slurm.nnodes=4",
                "com.berth.slurm.restart_count=1",
                "com.berth.slurm.nodelist=n[1-4]",
                "com.berth.slurm.user=alice",
            ]
        );
    }
}
