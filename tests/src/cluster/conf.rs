//! slurm.conf, cgroup.conf and plugstack.conf for the test cluster: node 1 (this
//! host, with fake GPUs) in the default partition, and when configured node 2
//! with node 1 in the multi-node partition.

use std::path::Path;

use super::ClusterConfig;

/// Tasks the node accepts at once. Set well above the real core count so tests
/// can run many tasks per node (the launch benchmark goes to 32) without
/// `--overcommit`; `SlurmdParameters=config_overrides` lets slurmd accept it.
pub const NODE_CPUS: u32 = 64;

/// The default partition: node 1 only, so single-node tests and benchmarks run
/// as on a one-node cluster.
pub const PARTITION: &str = "debug";

/// The partition holding both nodes, for multi-node tests.
pub const MULTI_PARTITION: &str = "multi";

/// Renders slurm.conf.
pub fn slurm_conf(cfg: &ClusterConfig, node: &str) -> String {
    let d = cfg.dir.display();
    // With node 2, Slurm talks over the veth pair: its host end is reachable from
    // both nodes, loopback only from node 1.
    let addr = cfg
        .second_node
        .as_ref()
        .map_or_else(|| "127.0.0.1".to_string(), |n| n.host_addr.to_string());
    let gres = if cfg.gpus > 0 {
        format!(" Gres=gpu:{}", cfg.gpus)
    } else {
        String::new()
    };
    let mut conf = format!(
        "# Written by berth's test harness; rewritten on every start.\n\
         ClusterName={name}\n\
         SlurmctldHost={node}({addr})\n\
         SlurmctldPort={ctld}\n\
         SlurmdPort={slurmd}\n\
         SlurmUser=root\n\
         SlurmdUser=root\n\
         AuthType=auth/munge\n\
         AuthInfo=socket={d}/munge/munge.socket\n\
         CredType=cred/munge\n\
         StateSaveLocation={d}/state\n\
         # Per node (%n): both slurmds share this directory.\n\
         SlurmdSpoolDir={d}/spool/%n\n\
         SlurmctldPidFile={d}/run/slurmctld.slurm.pid\n\
         SlurmdPidFile={d}/run/slurmd-%n.slurm.pid\n\
         GresTypes=gpu\n\
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
         NodeName={node} NodeAddr={addr} CPUs={NODE_CPUS}{gres} State=UNKNOWN\n\
         PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP\n",
        name = cfg.name,
        ctld = cfg.ctld_port,
        slurmd = cfg.slurmd_port,
    );
    if let Some(n2) = &cfg.second_node {
        conf.push_str(&format!(
            "NodeName={n2} NodeAddr={a2} CPUs={NODE_CPUS} State=UNKNOWN\n\
             PartitionName={MULTI_PARTITION} Nodes={node},{n2} MaxTime=INFINITE State=UP\n",
            n2 = n2.name,
            a2 = n2.node_addr,
        ));
    }
    for line in &cfg.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    conf
}

/// Renders gres.conf: `count` fake GPUs on `node`, one `File=` per device node
/// in `dir` (`nvidia0`...). Slurm only stats them, for their device numbers.
pub fn gres_conf(node: &str, dir: &Path, count: u32) -> String {
    let mut text = String::from("# Written by berth's test harness; rewritten on every start.\n");
    if count > 0 {
        text.push_str(&format!(
            "NodeName={node} Name=gpu File={}/nvidia[0-{}]\n",
            dir.display(),
            count - 1
        ));
    }
    text
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
        assert!(text.contains("NodeName=n1 NodeAddr=127.0.0.1 CPUs=64 Gres=gpu:4 "));
        assert!(!text.contains(MULTI_PARTITION));
        assert!(text.ends_with("Foo=bar\n"));
    }

    #[test]
    fn second_node_gets_its_own_address_and_the_multi_partition() {
        let mut cfg = ClusterConfig::at("/x/c".into());
        cfg.second_node = Some(super::super::SecondNode::default_for("n1"));
        let text = slurm_conf(&cfg, "n1");
        assert!(text.contains("SlurmctldHost=n1(10.231.0.1)\n"));
        assert!(text.contains("NodeName=n1 NodeAddr=10.231.0.1 "));
        assert!(text.contains("NodeName=n1-n2 NodeAddr=10.231.0.2 CPUs=64 State"));
        assert!(text.contains("PartitionName=debug Nodes=n1 Default=YES"));
        assert!(text.contains("PartitionName=multi Nodes=n1,n1-n2 MaxTime"));
        assert!(text.contains("SlurmdSpoolDir=/x/c/spool/%n\n"));
    }

    #[test]
    fn gres_conf_lists_the_fake_devices() {
        let text = gres_conf("n1", Path::new("/c/gpus"), 4);
        assert!(text.ends_with("\nNodeName=n1 Name=gpu File=/c/gpus/nvidia[0-3]\n"));
        assert!(!gres_conf("n1", Path::new("/c/gpus"), 0).contains("Name=gpu"));
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
