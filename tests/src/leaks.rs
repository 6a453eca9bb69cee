//! Checks that nothing of a finished container step is left on the node:
//! state, bundles, mounted images (as loop devices), runtime processes. Only meaningful
//! while no other container step runs (e2e tests hold one lock for that).

use std::path::Path;
use std::time::Duration;

use crate::{proc, site};

/// The runtime's state directory on the test node.
pub const STATE_ROOT: &str = "/run/berth";

/// The step containers (`slurm-*`, and their creation locks) with an entry in `dir`.
pub fn leftover(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        // `.slurm-*.lock`: a creation lock its holder failed to remove.
        .filter(|n| n.starts_with("slurm-") || n.starts_with(".slurm-"))
        .collect()
}

/// Backing files of loop devices whose image lies under `store`. Images are
/// mounted in private mount namespaces, invisible in the test's mountinfo:
/// a leaked mount shows as a loop device that is still attached.
pub fn loop_devices_under(store: &Path) -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|f| Path::new(f.trim()).starts_with(store))
        .collect()
}

/// Nothing of any container step is left on the node (panics naming what is).
pub fn assert_clean() {
    // slurmstepd removes the container when the step ends, just after srun returns.
    let clean = proc::wait_until(Duration::from_secs(10), || {
        leftover(STATE_ROOT).is_empty() && leftover(&format!("{STATE_ROOT}/bundles")).is_empty()
    });
    assert!(
        clean,
        "state left: {:?} {:?}",
        leftover(STATE_ROOT),
        leftover(&format!("{STATE_ROOT}/bundles"))
    );
    let store = site::store();
    // Images are mounted in the steps' private mount namespaces, so a leaked
    // mount never shows in this process's mountinfo: it shows as a loop device
    // still attached. Loop devices are global: node 2 of a multi-node step
    // (whose state the checks above do not see) may still be removing its
    // container.
    assert!(
        proc::wait_until(Duration::from_secs(10), || loop_devices_under(&store)
            .is_empty()),
        "loop devices left: {:?}",
        loop_devices_under(&store)
    );
    let creators = proc::with_cmdline(|c| c.contains("slurm-create"));
    assert!(creators.is_empty(), "runtime processes left: {creators:?}");
}
