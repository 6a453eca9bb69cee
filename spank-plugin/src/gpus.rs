//! Per-task GPU binding inside a step's container.
//!
//! A step has one container per node holding all the step's GPUs on that
//! node (annotation `com.berth.gpus`, from [`host_gpus`] at step creation),
//! and inside it CUDA numbers them from 0 in host order. Slurm, which knows
//! nothing of the container, gives each task host indices: with
//! `--gpus-per-task` or `--gpu-bind` each task's `SLURM_STEP_GPUS`,
//! `CUDA_VISIBLE_DEVICES` and `GPU_DEVICE_ORDINAL` name its own GPUs. So in
//! each task the plugin rewrites `CUDA_VISIBLE_DEVICES` (and
//! `GPU_DEVICE_ORDINAL` when Slurm set it) to the container's numbering: a
//! task bound to host GPU 3 of a step holding 2 and 3 gets `1`.
//!
//! Host indices come only from Slurm's allocation variables: `SLURM_STEP_GPUS`
//! (srun steps, and each task's own under binding), else `SLURM_JOB_GPUS`
//! (the batch step). Never from `CUDA_VISIBLE_DEVICES`: with
//! `ConstrainDevices=yes` Slurm makes it relative to the allocation, and on a
//! node without GPU gres it is whatever the user exported at submission.

/// The host GPU indices Slurm allocated, from the environment `env` of the
/// step (for the container) or of one task (its own GPUs); `None` without
/// an allocation.
pub fn host_gpus(env: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    ["SLURM_STEP_GPUS", "SLURM_JOB_GPUS"]
        .into_iter()
        .find_map(|name| Some((name, env(name).filter(|v| !v.is_empty())?)))
}

/// Errors binding a task's GPUs.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum GpuError {
    /// A GPU list that is not a comma list of indices.
    #[error("{name}={value:?} is not a comma list of GPU indices")]
    BadList { name: String, value: String },
    /// Slurm gave a task a GPU the container does not hold.
    #[error("the task's GPU {index} ({name}) is not one of the step container's GPUs {step}: the container was made for another GPU set (a reused --container-name?)")]
    NotInStep {
        index: u32,
        name: &'static str,
        step: String,
    },
}

fn parse(name: &str, value: &str) -> Result<Vec<u32>, GpuError> {
    value
        .split(',')
        // "" is an empty list: a container made without GPUs.
        .filter(|s| !s.is_empty())
        .map(|s| s.trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| GpuError::BadList {
            name: name.to_string(),
            value: value.to_string(),
        })
}

/// The variables to set in a task, given the step container's host GPU list
/// `step` and the task's environment `env`: `CUDA_VISIBLE_DEVICES` and, when
/// Slurm set it, `GPU_DEVICE_ORDINAL`, both in the container's numbering.
/// Empty when the task names no GPU.
pub fn task_vars(
    step: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(&'static str, String)>, GpuError> {
    let Some((name, task)) = host_gpus(&env) else {
        return Ok(Vec::new());
    };
    let mut order = parse("com.berth.gpus", step)?;
    order.sort_unstable();
    order.dedup();
    let mut local = Vec::new();
    for index in parse(name, &task)? {
        let pos = order
            .iter()
            .position(|g| *g == index)
            .ok_or(GpuError::NotInStep {
                index,
                name,
                step: step.to_string(),
            })?;
        local.push(pos.to_string());
    }
    let value = local.join(",");
    let mut out = vec![("CUDA_VISIBLE_DEVICES", value.clone())];
    if env("GPU_DEVICE_ORDINAL").is_some() {
        out.push(("GPU_DEVICE_ORDINAL", value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn per_task_gpus_are_renumbered_to_the_container_order() {
        // What Slurm 22.05 gives task 1 of `srun -n2 --gpus-per-task=1` on a
        // step holding host GPUs 2 and 3.
        let task1 = [
            ("SLURM_STEP_GPUS", "3"),
            ("CUDA_VISIBLE_DEVICES", "3"),
            ("GPU_DEVICE_ORDINAL", "3"),
        ];
        assert_eq!(
            task_vars("2,3", env(&task1)).unwrap(),
            vec![
                ("CUDA_VISIBLE_DEVICES", "1".to_string()),
                ("GPU_DEVICE_ORDINAL", "1".to_string())
            ]
        );
        // No binding: every task sees the whole step, in container order.
        let all = [("SLURM_STEP_GPUS", "3,2"), ("CUDA_VISIBLE_DEVICES", "3,2")];
        assert_eq!(
            task_vars("3,2", env(&all)).unwrap(),
            vec![("CUDA_VISIBLE_DEVICES", "1,0".to_string())]
        );
    }

    #[test]
    fn host_indices_come_from_slurm_allocation_variables_only() {
        // ConstrainDevices=yes: CUDA_VISIBLE_DEVICES is already relative.
        let constrained = [("SLURM_STEP_GPUS", "1"), ("CUDA_VISIBLE_DEVICES", "0")];
        assert_eq!(
            task_vars("0,1", env(&constrained)).unwrap(),
            vec![("CUDA_VISIBLE_DEVICES", "1".to_string())]
        );
        // The batch step has only the job's list.
        let batch = [("SLURM_JOB_GPUS", "2,3"), ("CUDA_VISIBLE_DEVICES", "0,1")];
        assert_eq!(
            host_gpus(env(&batch)),
            Some(("SLURM_JOB_GPUS", "2,3".to_string()))
        );
        assert_eq!(
            task_vars("2,3", env(&batch)).unwrap(),
            vec![("CUDA_VISIBLE_DEVICES", "0,1".to_string())]
        );
        // A CUDA_VISIBLE_DEVICES the user exported is no allocation.
        let exported = [("CUDA_VISIBLE_DEVICES", "3"), ("SLURM_STEP_GPUS", "")];
        assert_eq!(host_gpus(env(&exported)), None);
        assert!(task_vars("0,1", env(&exported)).unwrap().is_empty());
    }

    #[test]
    fn a_container_without_gpus_refuses_a_task_with_one() {
        // A named container made by a step without GPUs, joined by one with.
        let task = [("SLURM_STEP_GPUS", "1")];
        assert!(matches!(
            task_vars("", env(&task)),
            Err(GpuError::NotInStep { index: 1, .. })
        ));
        assert_eq!(task_vars("", env(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn foreign_or_malformed_lists_are_errors() {
        let e = task_vars("0,1", env(&[("SLURM_STEP_GPUS", "2")])).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the task's GPU 2 (SLURM_STEP_GPUS) is not one of the step container's GPUs 0,1"
            ),
            "{e}"
        );
        let e = task_vars("0,1", env(&[("SLURM_STEP_GPUS", "0,x")])).unwrap_err();
        assert_eq!(
            e,
            GpuError::BadList {
                name: "SLURM_STEP_GPUS".into(),
                value: "0,x".into()
            }
        );

        assert!(task_vars("x", env(&[("SLURM_STEP_GPUS", "0")])).is_err());
    }
}
