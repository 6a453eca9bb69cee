//! hooks.d through Slurm: the plugin passes the step's facts as annotations,
//! and a site hook selected by them runs when `srun --container-image` makes
//! the step's container.

use std::os::unix::fs::PermissionsExt;

use berth_tests::e2e::{self, TestHook};
use berth_tests::{leaks, user};

#[test]
fn a_hook_selected_by_slurm_annotations_runs_for_the_step() {
    // Holds the container-steps lock: the leak checks of other cases must not
    // see our step.
    let e = e2e::env();
    // A tag of our own, so the hook (selected on it) fires for this test only.
    let image = e.busybox_tagged("hooks-e2e");

    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let _hook = TestHook::install(
        "slurm-annotations",
        &serde_json::json!({
            "version": "1.0.0",
            "hook": {
                "path": "/bin/sh",
                "args": ["sh", "-c", format!("cat > {}/state.json", out.path().display())],
            },
            "when": {"annotations": {
                "^com\\.berth\\.slurm\\.nnodes$": "^1$",
                "^org\\.opencontainers\\.image\\.ref\\.name$": ":hooks-e2e$",
            }},
            "stages": ["createRuntime"],
        }),
    );

    // One step on this node; the annotations its container was created with.
    let step = |extra: &[&str]| -> (String, serde_json::Value) {
        let state_file = out.path().join("state.json");
        let _ = std::fs::remove_file(&state_file);
        let mut args = vec!["-N1"];
        args.extend(extra);
        args.extend([
            "--container-image",
            &image,
            "sh",
            "-c",
            "echo $SLURM_JOB_ID",
        ]);
        let o = e.srun(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap())
            .expect("the hook ran and saved the container state");
        let job = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(state["id"], format!("slurm-{job}.0"));
        (job, state["annotations"].clone())
    };

    let (job, a) = step(&[]);
    let want = [
        ("com.berth.slurm.job_id", job.as_str()),
        ("com.berth.slurm.step_id", "0"),
        ("com.berth.slurm.node_id", "0"),
        ("com.berth.slurm.nnodes", "1"),
        ("com.berth.slurm.restart_count", "0"),
        ("com.berth.slurm.user", user::NAME),
    ];
    for (k, v) in want {
        assert_eq!(a[k], v, "{k} in {a}");
    }
    let nodelist = a["com.berth.slurm.nodelist"].as_str().unwrap_or_default();
    assert!(!nodelist.is_empty(), "nodelist in {a}");
    assert!(a.get("com.berth.gpus").is_none(), "no GPUs asked: {a}");

    // The step's GPUs (the test cluster's fake gres) reach the GPU annotation.
    let (_, a) = step(&["--gpus=1"]);
    let gpus = a["com.berth.gpus"].as_str().unwrap_or_default();
    assert!(
        !gpus.is_empty() && gpus.bytes().all(|b| b.is_ascii_digit()),
        "one GPU index: {a}"
    );
    leaks::assert_clean();
}
