//! Cluster facts from Slurm's own JSON output (`sinfo --json`, `squeue --json`),
//! never from its human-readable tables.

use std::process::Command;

use serde_json::Value;

/// A node's state as Slurm reports it, lowercased (`idle`, `down`, `mixed`, ...),
/// and the reason an admin or Slurm gave for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    /// Base state and flags, e.g. `["idle"]` or `["down", "not_responding"]`.
    pub states: Vec<String>,
    /// The node's reason field (why it is down or drained), possibly empty.
    pub reason: String,
}

impl NodeState {
    /// True when the node accepts jobs.
    pub fn is_usable(&self) -> bool {
        let bad = [
            "down",
            "drain",
            "drained",
            "draining",
            "fail",
            "not_responding",
            "unknown",
            "future",
        ];
        !self.states.is_empty() && !self.states.iter().any(|s| bad.contains(&s.as_str()))
    }
}

fn json(mut cmd: Command) -> Option<Value> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())?
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.to_ascii_lowercase()],
        Value::Array(a) => a.iter().flat_map(strings).collect(),
        _ => vec![],
    }
}

/// The state of `node` from `sinfo --json` run through `cmd` (which carries
/// SLURM_CONF); `None` while slurmctld does not answer.
pub fn node_state(sinfo: Command, node: &str) -> Option<NodeState> {
    let doc = json(sinfo)?;
    let entry = doc["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == node)?;
    // Slurm 22.05 gives "state" as a string plus "state_flags"; newer releases give
    // an array. Accept both so a site upgrade does not break the harness.
    let mut states = strings(&entry["state"]);
    states.extend(strings(&entry["state_flags"]));
    Some(NodeState {
        states,
        reason: entry["reason"].as_str().unwrap_or("").to_string(),
    })
}

/// Ids of jobs that are not finished, from `squeue --json` run through `cmd`.
pub fn active_jobs(squeue: Command) -> Option<Vec<u64>> {
    let doc = json(squeue)?;
    let jobs = doc["jobs"].as_array()?;
    Some(
        jobs.iter()
            .filter(|j| {
                let states = strings(&j["job_state"]);
                states.iter().any(|s| {
                    matches!(
                        s.as_str(),
                        "pending" | "running" | "completing" | "suspended" | "configuring"
                    )
                })
            })
            .filter_map(|j| j["job_id"].as_u64())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_states() {
        let st = |s: &[&str]| NodeState {
            states: s.iter().map(|x| x.to_string()).collect(),
            reason: String::new(),
        };
        assert!(st(&["idle"]).is_usable());
        assert!(st(&["mixed"]).is_usable());
        assert!(!st(&["down", "not_responding"]).is_usable());
        assert!(!st(&["idle", "drain"]).is_usable());
        assert!(!st(&[]).is_usable());
    }
}
