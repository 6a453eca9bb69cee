//! The launch barrier hook through Slurm: in a two-node step whose second
//! node is slow to make its container, no task starts before that container
//! is ready.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_tests::e2e::{self, TestHook};
use berth_tests::leaks::assert_clean;
use berth_tests::{paths, user};

/// A file's modification time in nanoseconds (the same clock on both nodes:
/// they are one host).
fn mtime_ns(p: &Path) -> i128 {
    let md = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128
}

#[test]
fn no_task_starts_before_the_slow_nodes_container_is_ready() {
    let e = e2e::env();
    let partition = e
        .stack
        .cluster
        .multi_partition()
        .expect("the default test cluster has a second node");
    let image = e.busybox_tagged("barrier-e2e");
    // Files in the shared home: the slow node's "ready" mark and each task's
    // start mark.
    let dir = e2e::user_dir(Path::new(&format!("/home/{}", user::NAME)));
    let ready = dir.path().join("ready");
    // prestart runs before every createRuntime hook, so before the barrier;
    // without the barrier, node 0's task would start 3 s before `ready`.
    let _hook = TestHook::install(
        "barrier-slow-node",
        &serde_json::json!({
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
        }),
    );
    let script = format!("touch {}/task.$SLURM_NODEID", dir.path().display());
    let out = e.srun(&[
        "-p",
        partition,
        "-N2",
        "--container-image",
        &image,
        "sh",
        "-c",
        &script,
    ]);
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
