//! The launch barrier hook through Slurm: in a two-node step whose second
//! node is slow to make its container, no task starts before that container
//! is ready.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_tests::image::push::push;
use berth_tests::leaks::assert_clean;
use berth_tests::{fsutil, hooks_d, paths, stack, user};

/// A test-only hooks.d file, removed when dropped (`install` leaves `test-*`
/// files alone).
struct TestHook(PathBuf);

impl Drop for TestHook {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A file's modification time in nanoseconds (the same clock on both nodes:
/// they are one host).
fn mtime_ns(p: &Path) -> i128 {
    let md = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
}

#[test]
fn no_task_starts_before_the_slow_nodes_container_is_ready() {
    let _lock = berth_tests::lock::exclusive(&paths::root().join("containers.lock")).unwrap();
    let s = stack::services().expect("stack starts");
    let catalog = stack::images(&s).expect("images are pushed");
    let partition = s
        .cluster
        .multi_partition()
        .expect("the default test cluster has a second node");
    // A tag of our own, so the slow hook fires for this test only.
    let bb = &catalog.busybox;
    push(
        &bb.layout_dir,
        &bb.tag,
        &s.plain.push_target(),
        &bb.repository(),
        "barrier-e2e",
    )
    .unwrap();
    let image = format!("{}/{}:barrier-e2e", s.plain.host(), bb.repository());

    // Files in the shared home: the slow node's "ready" mark and each task's
    // start mark.
    let dir = tempfile::tempdir_in(format!("/home/{}", user::NAME)).unwrap();
    std::os::unix::fs::chown(dir.path(), Some(user::UID), None).unwrap();
    let ready = dir.path().join("ready");
    // prestart runs before every createRuntime hook, so before the barrier.
    let file = hooks_d::dir().join("test-barrier-slow-node.json");
    let hook = serde_json::json!({
        "version": "1.0.0",
        "hook": {
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("sleep 3; touch {}", ready.display())],
        },
        "when": {"annotations": {
            "^com\\.berth\\.slurm\\.node_id$": "^1$",
            "^org\\.opencontainers\\.image\\.ref\\.name$": ":barrier-e2e$",
        }},
        "stages": ["prestart"],
    });
    fsutil::write_atomic(&file, hook.to_string().as_bytes(), 0o644).unwrap();
    let _hook = TestHook(file);

    let out = s
        .cluster
        .command("/usr/sbin/runuser")
        .args(["-u", user::NAME, "--", "srun", "-p", partition, "-N2"])
        .args(["--container-image", &image, "sh", "-c"])
        .arg(format!("touch {}/task.$SLURM_NODEID", dir.path().display()))
        .current_dir("/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready_at = mtime_ns(&ready);
    for node in 0..2 {
        let started = mtime_ns(&dir.path().join(format!("task.{node}")));
        assert!(
            started >= ready_at,
            "task on node {node} started {} ms before the slow node was ready",
            (ready_at - started) / 1_000_000
        );
    }
    let barrier_dir = paths::root().join("barrier");
    let left: Vec<_> = std::fs::read_dir(&barrier_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "barrier files left: {left:?}");
    assert_clean();
}
