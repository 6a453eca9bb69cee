//! How the image's environment and the job's environment combine inside the
//! container. The same rules apply under srun, sbatch and salloc:
//!
//! 1. Every job variable passes through unless the image sets the same name.
//! 2. Where both set a name, the image wins (so the image's `PATH` and
//!    `LD_LIBRARY_PATH` find the image's programs), except for:
//!    - names the user listed with `--container-env` (the job wins);
//!    - Slurm's and the process managers' own variables (`SLURM_*`, `PMI_*`,
//!      `PMIX_*`, `OMPI_*`, `MPI_*` hooks aside), which must reach the tasks
//!      unchanged for srun, PMI and PMIx to work;
//!    - names the site lists in its config (`env.keep_job`).
//! 3. Image variables the job lacks are added.

/// Prefixes of variables that always keep the job's value.
pub const JOB_PREFIXES: &[&str] = &[
    "SLURM_", "SLURMD_", "SRUN_", "PMI_", "PMIX_", "OMPI_", "PRTE_", "BERTH_",
];

/// One change to apply to the job environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetVar {
    /// Variable name.
    pub name: String,
    /// Its value inside the container.
    pub value: String,
}

fn keeps_job_value(name: &str, keep: &[String]) -> bool {
    JOB_PREFIXES.iter().any(|p| name.starts_with(p)) || keep.iter().any(|k| k == name)
}

/// The variables to set in the job environment so the tasks see the merged
/// environment: `image` as `NAME=VALUE` strings from the image config, `job_has`
/// tells whether the job defines a name, `keep` lists names where the job wins.
pub fn merge(image: &[String], job_has: impl Fn(&str) -> bool, keep: &[String]) -> Vec<SetVar> {
    image
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .filter(|(name, _)| !(job_has(name) && keeps_job_value(name, keep)))
        .map(|(name, value)| SetVar {
            name: name.into(),
            value: value.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Vec<String> {
        [
            "PATH=/opt/app/bin:/usr/bin",
            "LD_LIBRARY_PATH=/opt/app/lib",
            "MY_VAR=image",
            "SLURM_FAKE=image",
            "ONLY_IMAGE=1",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn image_wins_except_for_kept_and_slurm_names() {
        let job = |n: &str| matches!(n, "PATH" | "MY_VAR" | "SLURM_FAKE");
        let set = merge(&image(), job, &["MY_VAR".to_string()]);
        let names: Vec<&str> = set.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["PATH", "LD_LIBRARY_PATH", "ONLY_IMAGE"]);
        assert_eq!(set[0].value, "/opt/app/bin:/usr/bin");
    }

    #[test]
    fn kept_names_the_job_lacks_come_from_the_image() {
        let set = merge(&image(), |_| false, &["MY_VAR".to_string()]);
        assert!(set.iter().any(|s| s.name == "MY_VAR" && s.value == "image"));
        assert!(set.iter().any(|s| s.name == "SLURM_FAKE"));
    }

    #[test]
    fn malformed_entries_are_ignored() {
        assert!(merge(&["NOEQUALS".to_string()], |_| false, &[]).is_empty());
    }
}
