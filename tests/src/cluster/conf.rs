//! slurm.conf, cgroup.conf and plugstack.conf for a single-node test cluster.

use std::path::Path;

use super::ClusterConfig;

/// Tasks the node accepts at once. Set well above the real core count so tests
/// can run many tasks per node (the launch benchmark goes to 32) without
/// `--overcommit`; `SlurmdParameters=config_overrides` lets slurmd accept it.
pub const NODE_CPUS: u32 = 64;

/// The name of the one partition.
pub const PARTITION: &str = "debug";

/// Renders slurm.conf.
pub fn slurm_conf(cfg: &ClusterConfig, node: &str) -> String {
    let d = cfg.dir.display();
    let mut conf = format!(
        "# Written by berth's test harness; rewritten on every start.\n\
         ClusterName={name}\n\
         SlurmctldHost={node}(127.0.0.1)\n\
         SlurmctldPort={ctld}\n\
         SlurmdPort={slurmd}\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         AuthType=auth/munge\n\
         AuthInfo=socket={d}/munge/munge.socket\n\
         CredType=cred/munge\n\
         StateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\n\
         SlurmctldPidFile={d}/run/slurmctld.slurm.pid\n\
         SlurmdPidFile={d}/run/slurmd.slurm.pid\n\
         # Without cgroup delegation on every host, track tasks by process tree.\n\
         ProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\n\
         SwitchType=switch/none\n\
         MpiDefault=none\n\
         SchedulerType=sched/backfill\n\
         SelectType=select/cons_tres\n\
         SelectTypeParameters=CR_Core\n\
         SlurmdParameters=config_overrides\n\
         ReturnToService=2\n\
         KillWait=5\n\
         MinJobAge=10\n\
         InactiveLimit=0\n\
         SlurmctldDebug=info\n\
         SlurmdDebug=info\n\
         JobAcctGatherType=jobacct_gather/none\n\
         AccountingStorageType=accounting_storage/none\n\
         JobCompType=jobcomp/none\n\
         PlugStackConfig={d}/plugstack.conf\n\
         NodeName={node} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} State=UNKNOWN\n\
         PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
        name = cfg.name,
        ctld = cfg.ctld_port,
        slurmd = cfg.slurmd_port,
    );
    for line in &cfg.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    conf
}

/// Renders cgroup.conf: Slurm reads it even with proctrack/linuxproc, and must not
/// try to talk to systemd, which test machines and CI containers often lack.
pub fn cgroup_conf() -> String {
    "CgroupPlugin=autodetect\nIgnoreSystemd=yes\n".to_string()
}

/// Renders plugstack.conf: one `required` line for berth's plugin when it is built.
pub fn plugstack_conf(plugin: Option<&Path>, args: &[String]) -> String {
    match plugin {
        Some(p) => format!("required {} {}\n", p.display(), args.join(" ")),
        None => "# berth's SPANK plugin is not built yet\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_names_ports_paths_and_extras() {
        let mut cfg = ClusterConfig::at("/x/c".into());
        cfg.ctld_port = 1111;
        cfg.extra_conf.push("Foo=bar".into());
        let text = slurm_conf(&cfg, "n1");
        assert!(text.contains("SlurmctldPort=1111\n"));
        assert!(text.contains("AuthInfo=socket=/x/c/munge/munge.socket\n"));
        assert!(text.contains("NodeName=n1 NodeAddr=127.0.0.1"));
        assert!(text.ends_with("Foo=bar\n"));
    }

    #[test]
    fn plugstack_names_plugin_and_args() {
        let line = plugstack_conf(
            Some(Path::new("/p/spank_berth.so")),
            &["config=/e/b.toml".into()],
        );
        assert_eq!(line, "required /p/spank_berth.so config=/e/b.toml\n");
    }
}
