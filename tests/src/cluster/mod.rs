//! A real Slurm cluster (munged, slurmctld, slurmd) for tests and the demo, all
//! under one directory with its own ports and munge socket, so it never touches a
//! site's `/etc/slurm` or `/etc/munge`. Node 1 is this host, with fake GPUs; the
//! default cluster adds node 2, a second slurmd in its own namespaces
//! ([`node2`]), and a partition with both nodes.
//!
//! [`Cluster::start`] is idempotent: when the cluster in that directory already
//! runs with the same slurm.conf it is reused, otherwise it is (re)started.

mod conf;
mod network;
pub mod node2;
pub mod query;
pub mod relay;
mod start;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use conf::{MULTI_PARTITION, NODE_CPUS, PARTITION};
pub use node2::SecondNode;

use crate::daemon::{self, DaemonError};
use crate::{fake_gpu, fsutil, paths, proc};

/// Environment key marking every process the harness starts for a cluster.
pub const MARK: &str = "BERTH_DEV_CLUSTER";

/// The harness's name for node 2's loopback relay ([`relay`]).
const RELAY: &str = "relay";

/// Errors starting or stopping the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A port the cluster needs is held by another program.
    #[error("{daemon} port {port} is already in use by {owner}: stop that program or choose another port")]
    PortTaken {
        daemon: &'static str,
        port: u16,
        owner: String,
    },
    /// A daemon did not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// slurmd runs but the node never became usable.
    #[error("node {node} is not usable after {secs} s (state {state}, reason {reason:?}): see {}", log.display())]
    NodeNotReady {
        node: String,
        state: String,
        reason: String,
        secs: u64,
        log: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A job step on the cluster failed.
    #[error("the job step failed ({0}): see the output above and the slurmd log")]
    Step(String),
    /// The fake GPU device nodes could not be made.
    #[error(transparent)]
    FakeGpu(#[from] fake_gpu::FakeGpuError),
    /// Node 2's network could not be set up or removed.
    #[error("node {node}: `{step}` failed: {detail}: run as root on a kernel with network namespaces and veth, and see `ip netns list`")]
    Network {
        node: String,
        step: String,
        detail: String,
    },
    /// Node 2's network namespace exists but is not this cluster's.
    #[error("network namespace {netns} already exists but this cluster did not create it (no {}): stop the cluster that uses it, or `ip netns delete {netns}`", owner.display())]
    NetnsTaken { netns: String, owner: PathBuf },
    /// The relay program is missing.
    #[error("cannot start node 2's loopback relay: {} is not built: run `cargo build -p berth-tests`", path.display())]
    RelayMissing { path: PathBuf },
    /// A command was aimed at node 2, which does not run.
    #[error("node 2 is not running in {}: start the cluster first", dir.display())]
    NoSecondNode { dir: PathBuf },
    /// Teardown could not stop everything.
    #[error("processes still running after teardown: {0:?}: kill them by hand")]
    Leftover(Vec<i32>),
}

/// How to set up one cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Directory holding configs, logs, spool and state.
    pub dir: PathBuf,
    /// Slurm's ClusterName.
    pub name: String,
    /// slurmctld's TCP port.
    pub ctld_port: u16,
    /// slurmd's TCP port.
    pub slurmd_port: u16,
    /// The SPANK plugin that plugstack.conf loads, if any.
    pub plugin: Option<PathBuf>,
    /// Arguments after the plugin in plugstack.conf.
    pub plugin_args: Vec<String>,
    /// Lines appended to slurm.conf (tests use it to break the file on purpose).
    pub extra_conf: Vec<String>,
    /// How long each daemon may take to become ready.
    pub start_timeout: Duration,
    /// Fake GPUs on node 1 (`gres/gpu` on [`crate::fake_gpu`] device nodes); 0 for none.
    pub gpus: u32,
    /// Node 2 and the multi-node partition, if wanted.
    pub second_node: Option<SecondNode>,
}

impl ClusterConfig {
    /// A cluster in `dir` on the default test ports (16817, 16818), without plugin.
    pub fn at(dir: PathBuf) -> Self {
        ClusterConfig {
            dir,
            name: "berth".into(),
            ctld_port: 16817,
            slurmd_port: 16818,
            plugin: None,
            plugin_args: vec![],
            extra_conf: vec![],
            start_timeout: Duration::from_secs(30),
            gpus: fake_gpu::GPUS,
            second_node: None,
        }
    }

    /// The default cluster: `paths::cluster_dir()` with berth's plugin when built.
    pub fn default_for_host() -> Self {
        let plugin = paths::spank_plugin();
        ClusterConfig {
            plugin: plugin.is_file().then_some(plugin),
            plugin_args: vec![
                format!("runtime={}", paths::berth_bin().display()),
                format!("config={}", crate::site::path().display()),
            ],
            second_node: Some(SecondNode {
                // Tests name the registries 127.0.0.1:PORT: relay those on node 2.
                forward_ports: vec![
                    crate::registry::RegistryConfig::plain().port,
                    crate::registry::RegistryConfig::secure().port,
                ],
                ..SecondNode::default_for(&node_name())
            }),
            ..Self::at(paths::cluster_dir())
        }
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    cfg: ClusterConfig,
    node: String,
}

/// This host's short name, which is the cluster's node 1.
pub fn node_name() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    host.split('.').next().unwrap_or("localhost").to_string()
}

impl Cluster {
    /// A handle on the cluster in `cfg.dir`, started or not.
    pub fn new(cfg: ClusterConfig) -> Self {
        Cluster {
            cfg,
            node: node_name(),
        }
    }

    /// Starts the cluster, or reuses it when it already runs with the same config.
    pub fn start(cfg: ClusterConfig) -> Result<Self, ClusterError> {
        let cluster = Cluster::new(cfg);
        cluster.start_daemons()?;
        Ok(cluster)
    }

    /// The default cluster, started once for all tests: parallel test processes
    /// take a lock so only one of them starts it.
    pub fn shared() -> Result<Self, ClusterError> {
        let root = paths::root();
        mkdir(&root, 0o755)?;
        let lock = root.join("cluster.lock");
        let _held = crate::lock::exclusive(&lock)
            .map_err(|source| ClusterError::Io { path: lock, source })?;
        Cluster::start(ClusterConfig::default_for_host())
    }

    /// Node 1's name (this host's).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The names of all nodes: node 1, then node 2 when configured.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = vec![self.node.clone()];
        nodes.extend(self.cfg.second_node.iter().map(|n| n.name.clone()));
        nodes
    }

    /// Node 2, when the cluster has one.
    pub fn second_node(&self) -> Option<&SecondNode> {
        self.cfg.second_node.as_ref()
    }

    /// The partition with every node ([`MULTI_PARTITION`]), when there is node 2.
    pub fn multi_partition(&self) -> Option<&'static str> {
        self.cfg.second_node.as_ref().map(|_| MULTI_PARTITION)
    }

    /// The directory of node 1's fake GPU device nodes (`nvidia0`..., and the
    /// control nodes, from [`fake_gpu::make_dev_dir`]), which gres.conf lists.
    pub fn gpu_dir(&self) -> PathBuf {
        self.cfg.dir.join("gpus")
    }

    /// A command run as root on node 2 (in its mount, UTS and network namespaces),
    /// to look at its `/run`, mounts or processes.
    pub fn on_second_node(&self, program: &str) -> Result<Command, ClusterError> {
        let pid = self
            .second_node_slurmd()
            .ok_or_else(|| ClusterError::NoSecondNode {
                dir: self.cfg.dir.clone(),
            })?;
        Ok(node2::command_in(pid, program))
    }

    /// The pid of node 2's slurmd, which holds node 2's namespaces, when it runs.
    fn second_node_slurmd(&self) -> Option<i32> {
        let node = self.cfg.second_node.as_ref()?;
        daemon::running(&self.run_dir(), &node.daemon_name())
    }

    /// The absolute `path` as seen by each running node: node 1's is this host's;
    /// node 2's (whose `/run` is its own) is reached through its slurmd's
    /// `/proc/PID/root`, which resolves in node 2's mount namespace.
    pub fn on_each_node(&self, path: &Path) -> Vec<PathBuf> {
        let mut paths = vec![path.to_path_buf()];
        paths.extend(self.second_node_slurmd().map(|pid| {
            Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap_or(path))
        }));
        paths
    }

    /// The cluster's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Path of slurm.conf; clients find it through `SLURM_CONF`.
    pub fn conf_path(&self) -> PathBuf {
        self.cfg.dir.join("slurm.conf")
    }

    /// A Slurm client command (`srun`, `sbatch`, `sinfo`...) aimed at this cluster.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("SLURM_CONF", self.conf_path());
        cmd
    }

    fn run_dir(&self) -> PathBuf {
        self.cfg.dir.join("run")
    }

    fn mark(&self) -> String {
        self.cfg.dir.display().to_string()
    }

    /// The harness's names of this cluster's daemons.
    fn daemons(&self) -> Vec<String> {
        let mut names: Vec<String> = ["munged", "slurmctld", "slurmd"].map(String::from).into();
        if let Some(n2) = &self.cfg.second_node {
            names.push(n2.daemon_name());
            if !n2.forward_ports.is_empty() {
                names.push(RELAY.into());
            }
        }
        names
    }

    /// True when every daemon of this cluster runs.
    pub fn is_running(&self) -> bool {
        self.daemons()
            .iter()
            .all(|d| daemon::running(&self.run_dir(), d).is_some())
    }

    /// Live processes started for this cluster: the daemons (by their mark) and
    /// the slurmstepds (by their sockets in this cluster's spool directory).
    pub fn processes(&self) -> Vec<i32> {
        let mut pids = proc::with_env(MARK, &self.mark());
        pids.extend(proc::with_unix_socket_under(&self.cfg.dir.join("spool")));
        // Node 2's slurmstepds bind their sockets in its network namespace.
        pids.extend(self.network().map(|n| n.processes()).unwrap_or_default());
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Node 2's network, when the cluster has node 2.
    fn network(&self) -> Option<network::Network<'_>> {
        let node = self.cfg.second_node.as_ref()?;
        Some(network::Network {
            node,
            run_dir: self.run_dir(),
        })
    }

    /// Cancels every job, stops the daemons and kills anything left that the
    /// harness started (slurmstepd included), then removes node 2's network.
    /// Fails if a process or node 2's network survives.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let run_dir = self.run_dir();
        if daemon::running(&run_dir, "slurmctld").is_some() {
            for partition in [Some(PARTITION), self.multi_partition()]
                .into_iter()
                .flatten()
            {
                let _ = self
                    .command("scancel")
                    .args(["--partition", partition])
                    .output();
            }
            let squeue = || {
                let mut cmd = self.command("squeue");
                cmd.arg("--json");
                query::active_jobs(cmd)
            };
            proc::wait_until(Duration::from_secs(15), || {
                squeue().map_or(true, |j| j.is_empty())
            });
        }
        for name in self.daemons().iter().rev() {
            daemon::stop(&run_dir, name, Duration::from_secs(10));
        }
        // slurmstepd outlives a stopped slurmd while its tasks run: end those too.
        for pid in proc::with_unix_socket_under(&self.cfg.dir.join("spool")) {
            proc::terminate(pid, Duration::from_secs(5));
        }
        let network = self.network().map_or(Ok(()), |n| n.teardown());
        daemon::kill_marked((MARK, &self.mark()));
        let left = self.processes();
        if !left.is_empty() {
            return Err(ClusterError::Leftover(left));
        }
        network
    }
}

impl daemon::Stop for Cluster {
    type Error = ClusterError;
    fn teardown(&self) -> Result<(), ClusterError> {
        self.stop()
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<(), ClusterError> {
    fsutil::mkdir(path, mode).map_err(|source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), ClusterError> {
    write_bytes(path, text.as_bytes(), mode)
}

fn write_bytes(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ClusterError> {
    fsutil::write_atomic(path, bytes, mode).map_err(|source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    })
}
