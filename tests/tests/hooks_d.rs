//! hooks.d through Slurm: the plugin passes the step's facts as annotations,
//! and a site hook selected by them runs when `srun --container-image` makes
//! the step's container.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use berth_tests::image::push::push;
use berth_tests::stack;
use berth_tests::{hooks_d, paths, user};

/// A test-only hooks.d file, removed when dropped (`install` leaves `test-*`
/// files alone).
struct TestHook(PathBuf);

impl Drop for TestHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_hook_selected_by_slurm_annotations_runs_for_the_step() {
    // Same lock as the container cases: their leak checks must not see our step.
    let _lock = berth_tests::lock::exclusive(&paths::root().join("containers.lock")).unwrap();
    let s = stack::services().expect("stack starts");
    let catalog = stack::images(&s).expect("images are pushed");
    // A tag of our own, so the hook (selected on it) fires for this test only.
    let bb = &catalog.busybox;
    push(
        &bb.layout_dir,
        &bb.tag,
        &s.plain.push_target(),
        &bb.repository(),
        "hooks-e2e",
    )
    .unwrap();
    let image = format!("{}/{}:hooks-e2e", s.plain.host(), bb.repository());

    let out = tempfile::tempdir().unwrap();
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = hooks_d::dir().join("test-slurm-annotations.json");
    let hook = serde_json::json!({
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
    });
    std::fs::write(&file, hook.to_string()).unwrap();
    let _hook = TestHook(file);

    // One step on this node; the annotations its container was created with.
    let step = |extra: &[&str]| -> (String, serde_json::Value) {
        let state_file = out.path().join("state.json");
        let _ = std::fs::remove_file(&state_file);
        let o = s
            .cluster
            .command("/usr/sbin/runuser")
            .args(["-u", user::NAME, "--", "srun", "-N1"])
            .args(extra)
            .args([
                "--container-image",
                &image,
                "sh",
                "-c",
                "echo $SLURM_JOB_ID",
            ])
            .current_dir("/tmp")
            .output()
            .unwrap();
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
}
