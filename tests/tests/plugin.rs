//! End-to-end tests of `spank_berth.so` loaded by a real srun/slurmd.

use berth_tests::cluster::{Cluster, ClusterConfig};
use berth_tests::daemon::StopOnDrop;
use berth_tests::{paths, proc, stack};

#[test]
fn srun_help_lists_every_container_option() {
    let stack = stack::services().expect("stack starts");
    let out = stack
        .cluster
        .command("srun")
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for def in spank_berth::options::OPTIONS {
        assert!(
            help.contains(&format!("--{}", def.name)),
            "srun --help lists --{}",
            def.name
        );
    }
}

#[test]
fn bad_mount_spec_fails_the_step_with_one_clear_line() {
    let stack = stack::services().expect("stack starts");
    let out = stack
        .cluster
        .command("srun")
        .args(["--container-mounts=relative:/data", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("berth:")).collect();
    assert_eq!(ours.len(), 1, "one line from berth: {err}");
    assert!(
        ours[0].contains("--container-mounts entry \"relative:/data\" is invalid"),
        "{err}"
    );
    assert!(stack.cluster.is_running(), "slurmd stays up");
}

/// A cluster of its own whose plugstack.conf passes `args` to berth's plugin.
fn cluster_with_plugin_args(dir: &tempfile::TempDir, args: &[&str]) -> ClusterConfig {
    let mut cfg = ClusterConfig::at(dir.path().to_path_buf());
    cfg.name = format!("plug{}", std::process::id());
    cfg.ctld_port = proc::free_port();
    cfg.slurmd_port = proc::free_port();
    cfg.plugin = Some(paths::spank_plugin());
    cfg.plugin_args = args.iter().map(|a| a.to_string()).collect();
    cfg
}

#[test]
fn sbatch_support_0_refuses_images_on_sbatch_only() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cluster_with_plugin_args(&dir, &["sbatch_support=0"]);
    let cluster = StopOnDrop(Cluster::start(cfg).expect("cluster starts"));
    let sbatch = cluster
        .command("sbatch")
        .args(["--container-image=busybox", "--wrap", "true"])
        .output()
        .unwrap();
    let srun = cluster.command("srun").arg("true").output().unwrap();
    assert!(
        !sbatch.status.success(),
        "sbatch --container-image is refused"
    );
    let err = String::from_utf8_lossy(&sbatch.stderr);
    assert!(
        err.contains("disabled for sbatch and salloc on this cluster (sbatch_support=0"),
        "{err}"
    );
    assert!(
        srun.status.success(),
        "srun is unaffected: {}",
        String::from_utf8_lossy(&srun.stderr)
    );
    cluster.stop().expect("teardown");
}

#[test]
fn unknown_plugstack_argument_stops_the_step_not_slurmd() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = cluster_with_plugin_args(&dir, &["config=/etc/berth/berth.toml", "conifg=/typo"]);
    let cluster = StopOnDrop(Cluster::start(cfg).expect("slurmd starts despite the typo"));
    let out = cluster.command("srun").arg("true").output().unwrap();
    let slurmd_up = cluster.is_running();
    let slurmd_log = std::fs::read_to_string(dir.path().join("run/slurmd.log")).unwrap_or_default();
    assert!(
        !out.status.success(),
        "a bad plugstack.conf argument fails the step"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("berth: plugstack.conf: unknown plugstack.conf argument \"conifg=/typo\""),
        "{err}"
    );
    assert!(slurmd_up, "slurmd stays up");
    assert!(
        slurmd_log.contains("every container step will fail until this is fixed"),
        "slurmd logs it: {slurmd_log}"
    );
    cluster.stop().expect("teardown");
}
