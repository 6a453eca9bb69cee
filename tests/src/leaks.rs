//! Checks that nothing of a finished container step is left on the test nodes:
//! state, bundles, mounted images (as loop devices), runtime processes. Only meaningful
//! while no other container step runs (e2e tests hold one lock for that).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{Cluster, ClusterConfig};
use crate::{proc, site};

/// The runtime's state directory on each test node.
pub const STATE_ROOT: &str = "/run/berth";

/// The step containers (`slurm-*`, and their creation locks) with an entry in `dir`.
pub fn leftover(dir: impl AsRef<Path>) -> Vec<String> {
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

/// The step containers left in the state roots `roots` or their bundles,
/// each as its full path.
fn left_in(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .flat_map(|r| [r.clone(), r.join("bundles")])
        .flat_map(|d| leftover(&d).into_iter().map(move |n| d.join(n)))
        .collect()
}

/// Nothing of any container step is left on the default test cluster's nodes
/// (the one [`crate::e2e::env`] runs steps on); panics naming what is.
pub fn assert_clean() {
    // Node 2 has a /run of its own: its state root is another directory.
    let roots = Cluster::new(ClusterConfig::default_for_host()).on_each_node(Path::new(STATE_ROOT));
    // slurmstepd removes the container when the step ends, just after srun
    // returns (on node 2 possibly a little later than on node 1).
    let clean = proc::wait_until(Duration::from_secs(10), || left_in(&roots).is_empty());
    assert!(clean, "state left: {:?}", left_in(&roots));
    let store = site::store();
    // Images are mounted in the steps' private mount namespaces, so a leaked
    // mount never shows in this process's mountinfo: it shows as a loop device
    // still attached. Loop devices are global: this covers both nodes.
    assert!(
        proc::wait_until(Duration::from_secs(10), || loop_devices_under(&store)
            .is_empty()),
        "loop devices left: {:?}",
        loop_devices_under(&store)
    );
    // Node 2 shares this host's pid namespace: its runtime processes show too.
    let creators = proc::with_cmdline(|c| c.contains("slurm-create"));
    assert!(creators.is_empty(), "runtime processes left: {creators:?}");
}
