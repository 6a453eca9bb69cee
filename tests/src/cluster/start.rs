//! Starting the cluster: configs, node 2's network, then the daemons in order
//! (munged, slurmctld, node 1's slurmd, node 2's slurmd, node 2's relay), each
//! waited for until it is ready.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{
    conf, mkdir, node2, query, write, write_bytes, Cluster, ClusterError, SecondNode, MARK, RELAY,
};
use crate::daemon::{self, Daemon, DaemonError};
use crate::{fake_gpu, paths, proc};

impl Cluster {
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
        // Made once: remaking them would race with steps that bind them now.
        let minors: Vec<u32> = (0..self.cfg.gpus).collect();
        if !devices_present(&self.gpu_dir(), &minors) {
            fake_gpu::make_dev_dir(&self.gpu_dir(), &minors)?;
        }
        // gres.conf follows from what slurm.conf names (GPU count, directory), so
        // comparing slurm.conf alone decides a restart.
        let gres = conf::gres_conf(&self.node, &self.gpu_dir(), self.cfg.gpus);
        write(&d.join("gres.conf"), &gres, 0o644)?;
        if let Some(n2) = &self.cfg.second_node {
            self.write_hosts(&node2::hosts_file(&self.node, n2))?;
        }
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

    fn hosts_path(&self) -> PathBuf {
        self.cfg.dir.join("hosts")
    }

    /// Writes node 2's hosts file in place and only when it changes: node 2
    /// bind-mounts it over its `/etc/hosts`, and a file replaced by a rename
    /// would leave that mount on a deleted inode, which berth cannot bind
    /// into containers (ENOENT).
    fn write_hosts(&self, text: &str) -> Result<(), ClusterError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.hosts_path();
        if fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        fs::write(&path, text)
            .and_then(|_| fs::set_permissions(&path, fs::Permissions::from_mode(0o644)))
            .map_err(|source| ClusterError::Io { path, source })
    }

    pub(super) fn start_daemons(&self) -> Result<(), ClusterError> {
        let unchanged = self.write_configs()?;
        if unchanged && self.is_running() {
            if let Some(network) = self.network() {
                network.publish_name()?;
            }
            return self.wait_nodes();
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
        let result = self
            .network()
            .map_or(Ok(()), |n| n.setup())
            .and_then(|_| self.spawn_all());
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

        let slurmd_args = |node: &str| -> Vec<String> {
            vec![
                "-D".into(),
                "-N".into(),
                node.into(),
                "-f".into(),
                conf.clone(),
            ]
        };
        let slurmd = self.daemon(
            "slurmd",
            "/usr/sbin/slurmd",
            "slurm-wlm",
            slurmd_args(&self.node),
            &run_dir,
            &mark,
        );
        self.start_slurmd(&slurmd, &self.node)?;
        let Some(n2) = &self.cfg.second_node else {
            return Ok(());
        };
        let mut command = vec!["/usr/sbin/slurmd".to_string()];
        command.extend(slurmd_args(&n2.name));
        let name = n2.daemon_name();
        let slurmd2 = self.daemon(
            &name,
            "/usr/bin/nsenter",
            "util-linux",
            node2::wrap(n2, &self.hosts_path(), &paths::root(), &command),
            &run_dir,
            &mark,
        );
        self.start_slurmd(&slurmd2, &n2.name)?;
        self.start_relay(n2, &run_dir, &mark)
    }

    /// Starts the relay that makes this host's loopback services (registries)
    /// reachable at 127.0.0.1 on node 2, once its slurmd runs.
    fn start_relay(&self, n2: &SecondNode, run_dir: &Path, mark: &str) -> Result<(), ClusterError> {
        if n2.forward_ports.is_empty() {
            return Ok(());
        }
        let program = paths::berth_dev_bin();
        if !program.is_file() {
            return Err(ClusterError::RelayMissing { path: program });
        }
        let slurmd2 = daemon::running(run_dir, &n2.daemon_name());
        let mut args = vec![
            "relay".to_string(),
            "--netns".into(),
            n2.netns_path().display().to_string(),
        ];
        args.extend(n2.forward_ports.iter().map(u16::to_string));
        let program = program.display().to_string();
        let relay = self.daemon(RELAY, &program, "berth-tests", args, run_dir, mark);
        relay.start(self.cfg.start_timeout, || {
            slurmd2.is_some_and(|pid| {
                n2.forward_ports
                    .iter()
                    .all(|&port| proc::listening_in(pid, port))
            })
        })?;
        Ok(())
    }

    /// Starts one slurmd and waits until Slurm reports its node usable.
    fn start_slurmd(&self, slurmd: &Daemon, node: &str) -> Result<(), ClusterError> {
        slurmd
            .start(self.cfg.start_timeout, || self.node_usable(node))
            .map(|_| ())
            .map_err(|e| match e {
                // slurmd runs but the node stays down: say what Slurm says about it.
                DaemonError::Timeout { .. } => self.not_ready(node),
                other => other.into(),
            })
    }

    fn node_state(&self, node: &str) -> Option<query::NodeState> {
        let mut sinfo = self.command("sinfo");
        sinfo.args(["--json", "--nodes", node]);
        query::node_state(sinfo, node)
    }

    fn node_usable(&self, node: &str) -> bool {
        self.node_state(node).is_some_and(|s| s.is_usable())
    }

    fn not_ready(&self, node: &str) -> ClusterError {
        let state = self.node_state(node);
        let daemon = match &self.cfg.second_node {
            Some(n2) if n2.name == node => n2.daemon_name(),
            _ => "slurmd".into(),
        };
        ClusterError::NodeNotReady {
            node: node.into(),
            state: state
                .as_ref()
                .map(|s| s.states.join("+"))
                .unwrap_or_else(|| "unknown".into()),
            reason: state.map(|s| s.reason).unwrap_or_default(),
            secs: self.cfg.start_timeout.as_secs(),
            log: self.run_dir().join(format!("{daemon}.log")),
        }
    }

    fn wait_nodes(&self) -> Result<(), ClusterError> {
        for node in self.nodes() {
            if !proc::wait_until(self.cfg.start_timeout, || self.node_usable(&node)) {
                return Err(self.not_ready(&node));
            }
        }
        Ok(())
    }
}

/// True when `dir` holds the fake GPU nodes `nvidiaM` (195:M) for all `minors`.
fn devices_present(dir: &Path, minors: &[u32]) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    minors.iter().all(|&m| {
        fs::symlink_metadata(dir.join(format!("nvidia{m}"))).is_ok_and(|meta| {
            meta.file_type().is_char_device()
                && meta.rdev() == nix::sys::stat::makedev(fake_gpu::NVIDIA_MAJOR, m.into())
        })
    })
}
