//! End-to-end tests of `spank_berth.so` loaded by a real srun/slurmd.

use berth_tests::cluster::{Cluster, ClusterConfig};
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

#[test]
fn image_request_is_refused_rather_than_run_outside_the_image() {
    let stack = stack::services().expect("stack starts");
    for (args, env) in [
        (vec!["--container-image=busybox", "true"], None),
        (vec!["true"], Some("busybox")),
    ] {
        let mut cmd = stack.cluster.command("srun");
        cmd.args(&args);
        if let Some(image) = env {
            cmd.env("BERTH_CONTAINER_IMAGE", image);
        }
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "{args:?} must not run outside the image"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("berth: container: "),
            "the reason is shown: {err}"
        );
    }
}

#[test]
fn unknown_plugstack_argument_stops_the_step_not_slurmd() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ClusterConfig::at(dir.path().to_path_buf());
    cfg.name = format!("plug{}", std::process::id());
    cfg.ctld_port = proc::free_port();
    cfg.slurmd_port = proc::free_port();
    cfg.plugin = Some(paths::spank_plugin());
    cfg.plugin_args = vec!["config=/etc/berth/berth.toml".into(), "conifg=/typo".into()];
    let cluster = Cluster::start(cfg).expect("slurmd starts despite the typo");
    let out = cluster.command("srun").arg("true").output().unwrap();
    let slurmd_up = cluster.is_running();
    let slurmd_log = std::fs::read_to_string(dir.path().join("run/slurmd.log")).unwrap_or_default();
    let stopped = cluster.stop();
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
    stopped.expect("teardown");
}
