//! A real single-node Slurm cluster (munged, slurmctld, slurmd) for tests and
//! the demo, all under one directory with its own ports and munge socket, so it
//! never touches a site's `/etc/slurm` or `/etc/munge`.
//!
//! [`Cluster::start`] is idempotent: when the cluster in that directory already
//! runs with the same slurm.conf it is reused, otherwise it is (re)started.

mod conf;
pub mod query;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use conf::{NODE_CPUS, PARTITION};

use crate::daemon::{self, Daemon, DaemonError};
use crate::{fsutil, paths, proc};

/// Environment key marking every process the harness starts for a cluster.
pub const MARK: &str = "BERTH_DEV_CLUSTER";

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

/// This host's short name, which is the cluster's one node.
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

    /// The node's name.
    pub fn node(&self) -> &str {
        &self.node
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

    /// True when munged, slurmctld and slurmd of this cluster all run.
    pub fn is_running(&self) -> bool {
        ["munged", "slurmctld", "slurmd"]
            .iter()
            .all(|d| daemon::running(&self.run_dir(), d).is_some())
    }

    /// Live processes started for this cluster: the daemons (by their mark) and
    /// the slurmstepds (by their sockets in this cluster's spool directory).
    pub fn processes(&self) -> Vec<i32> {
        let mut pids = proc::with_env(MARK, &self.mark());
        pids.extend(proc::with_unix_socket_under(&self.cfg.dir.join("spool")));
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    fn write_configs(&self) -> Result<bool, ClusterError> {
        let d = &self.cfg.dir;
        for (sub, mode) in [
            ("", 0o755),
            ("run", 0o755),
            ("munge", 0o755),
            ("state", 0o700),
            ("spool", 0o755),
        ] {
            mkdir(&d.join(sub), mode)?;
        }
        let slurm_conf = conf::slurm_conf(&self.cfg, &self.node);
        let unchanged = fs::read_to_string(self.conf_path()).is_ok_and(|old| old == slurm_conf);
        write(&self.conf_path(), &slurm_conf, 0o644)?;
        write(&d.join("cgroup.conf"), &conf::cgroup_conf(), 0o644)?;
        // slurmstepd reads plugstack.conf at every step, so it can change under a
        // running cluster without a restart.
        let plugstack = conf::plugstack_conf(self.cfg.plugin.as_deref(), &self.cfg.plugin_args);
        write(&d.join("plugstack.conf"), &plugstack, 0o644)?;
        let key = d.join("munge/munge.key");
        if !key.exists() {
            let mut bytes = vec![0u8; 1024];
            fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .map_err(|source| ClusterError::Io {
                    path: key.clone(),
                    source,
                })?;
            write_bytes(&key, &bytes, 0o600)?;
        }
        Ok(unchanged)
    }

    fn start_daemons(&self) -> Result<(), ClusterError> {
        let unchanged = self.write_configs()?;
        if unchanged && self.is_running() {
            return self.wait_node();
        }
        self.stop()?;
        for (daemon, port) in [
            ("slurmctld", self.cfg.ctld_port),
            ("slurmd", self.cfg.slurmd_port),
        ] {
            if proc::port_in_use(port) {
                let owner = proc::port_owner(port)
                    .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                    .unwrap_or_else(|| "another program".into());
                return Err(ClusterError::PortTaken {
                    daemon,
                    port,
                    owner,
                });
            }
        }
        let result = self.spawn_all();
        if result.is_err() {
            // Leave nothing half-started behind: the caller sees the first cause.
            let _ = self.stop();
        }
        result
    }

    fn daemon<'a>(
        &'a self,
        name: &'a str,
        program: &'a str,
        package: &'a str,
        args: Vec<String>,
        run_dir: &'a Path,
        mark: &'a str,
    ) -> Daemon<'a> {
        Daemon {
            name,
            program,
            args,
            package,
            run_dir,
            mark: (MARK, mark),
            env: vec![("SLURM_CONF".into(), self.conf_path().display().to_string())],
        }
    }

    fn spawn_all(&self) -> Result<(), ClusterError> {
        let d = self.cfg.dir.display().to_string();
        let run_dir = self.run_dir();
        let mark = self.mark();
        let timeout = self.cfg.start_timeout;
        let socket = self.cfg.dir.join("munge/munge.socket");
        let munged = self.daemon(
            "munged",
            "/usr/sbin/munged",
            "munge",
            vec![
                "--foreground".into(),
                // munged refuses to run as root without --force; the key and socket are ours.
                "--force".into(),
                format!("--socket={}", socket.display()),
                format!("--key-file={d}/munge/munge.key"),
                format!("--pid-file={d}/run/munged.munge.pid"),
                format!("--seed-file={d}/munge/munge.seed"),
            ],
            &run_dir,
            &mark,
        );
        munged.start(timeout, || socket.exists())?;

        let conf = self.conf_path().display().to_string();
        let ctld_port = self.cfg.ctld_port;
        let ctld = self.daemon(
            "slurmctld",
            "/usr/sbin/slurmctld",
            "slurm-wlm",
            vec![
                "-D".into(),
                "-c".into(),
                "-i".into(),
                "-f".into(),
                conf.clone(),
            ],
            &run_dir,
            &mark,
        );
        ctld.start(timeout, || {
            std::net::TcpStream::connect(("127.0.0.1", ctld_port)).is_ok()
        })?;

        let slurmd = self.daemon(
            "slurmd",
            "/usr/sbin/slurmd",
            "slurm-wlm",
            vec![
                "-D".into(),
                "-N".into(),
                self.node.clone(),
                "-f".into(),
                conf,
            ],
            &run_dir,
            &mark,
        );
        let node = self.node.clone();
        slurmd
            .start(timeout, || self.node_state().is_some_and(|s| s.is_usable()))
            .map(|_| ())
            .map_err(|e| match e {
                // slurmd runs but the node stays down: say what Slurm says about it.
                DaemonError::Timeout { .. } => self.not_ready(&node),
                other => other.into(),
            })
    }

    fn node_state(&self) -> Option<query::NodeState> {
        let mut sinfo = self.command("sinfo");
        sinfo.args(["--json", "--nodes", &self.node]);
        query::node_state(sinfo, &self.node)
    }

    fn not_ready(&self, node: &str) -> ClusterError {
        let state = self.node_state();
        ClusterError::NodeNotReady {
            node: node.into(),
            state: state
                .as_ref()
                .map(|s| s.states.join("+"))
                .unwrap_or_else(|| "unknown".into()),
            reason: state.map(|s| s.reason).unwrap_or_default(),
            secs: self.cfg.start_timeout.as_secs(),
            log: self.run_dir().join("slurmd.log"),
        }
    }

    fn wait_node(&self) -> Result<(), ClusterError> {
        if proc::wait_until(self.cfg.start_timeout, || {
            self.node_state().is_some_and(|s| s.is_usable())
        }) {
            Ok(())
        } else {
            Err(self.not_ready(&self.node))
        }
    }

    /// Cancels every job, stops the daemons and kills anything left that the
    /// harness started (slurmstepd included). Fails if a process survives.
    pub fn stop(&self) -> Result<(), ClusterError> {
        let run_dir = self.run_dir();
        if daemon::running(&run_dir, "slurmctld").is_some() {
            let _ = self
                .command("scancel")
                .args(["--partition", PARTITION])
                .output();
            let squeue = || {
                let mut cmd = self.command("squeue");
                cmd.arg("--json");
                query::active_jobs(cmd)
            };
            proc::wait_until(Duration::from_secs(15), || {
                squeue().is_none_or(|j| j.is_empty())
            });
        }
        for name in ["slurmd", "slurmctld", "munged"] {
            daemon::stop(&run_dir, name, Duration::from_secs(10));
        }
        // slurmstepd outlives a stopped slurmd while its tasks run: end those too.
        for pid in proc::with_unix_socket_under(&self.cfg.dir.join("spool")) {
            proc::terminate(pid, Duration::from_secs(5));
        }
        daemon::kill_marked((MARK, &self.mark()));
        let left = self.processes();
        if left.is_empty() {
            Ok(())
        } else {
            Err(ClusterError::Leftover(left))
        }
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
