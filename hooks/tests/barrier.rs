//! The launch barrier hook run as real processes, one per simulated node,
//! against a temporary "shared" directory.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const NODELIST: &str = "n[1-3]";

/// A bundle whose config.json carries the step's annotations.
fn bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"ociVersion":"1.2.0","root":{"path":"rootfs"},"process":{"cwd":"/","args":["true"],"user":{"uid":0,"gid":0}}}"#,
    )
    .unwrap();
    dir
}

/// Starts the hook for `node` of a `nnodes`-node step of job 77.
fn node(base: &Path, node: u32, nnodes: u32, timeout_s: u32) -> (Child, tempfile::TempDir) {
    let b = bundle();
    let state = format!(
        r#"{{"ociVersion":"1.2.0","id":"slurm-77.0","status":"creating","pid":{},"bundle":"{}","annotations":{{"com.berth.slurm.job_id":"77","com.berth.slurm.step_id":"0","com.berth.slurm.restart_count":"0","com.berth.slurm.node_id":"{node}","com.berth.slurm.nnodes":"{nnodes}","com.berth.slurm.nodelist":"{NODELIST}"}}}}"#,
        std::process::id(),
        b.path().display()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth-hook-barrier"))
        .env_clear()
        .env("BARRIER_DIR", base)
        .env("BARRIER_TIMEOUT_S", timeout_s.to_string())
        .env("BARRIER_POLL_MS", "20")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(state.as_bytes())
        .unwrap();
    (child, b)
}

fn finish(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Waits until `child` has had time to arrive and poll (it cannot pass
/// alone), and checks it is still waiting.
fn still_waiting(child: &mut Child, what: &str) {
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what} is still blocked"
    );
}

/// Nothing is left in the barrier directory.
fn assert_empty(base: &Path) {
    assert!(entries(base).is_empty(), "{:?}", entries(base));
}

/// Starts nodes `first` of a 3-node step, checks none of them passes, then
/// starts node `last` and checks all are released and nothing is left.
fn released_only_after(base: &Path, first: &[u32], last: u32) {
    let mut nodes: Vec<_> = first.iter().map(|n| node(base, *n, 3, 300)).collect();
    for (n, (c, _)) in first.iter().zip(nodes.iter_mut()) {
        still_waiting(c, &format!("node {n} before node {last}"));
    }
    nodes.push(node(base, last, 3, 300));
    for (c, _) in nodes {
        let (ok, err) = finish(c);
        assert!(ok, "released: {err}");
    }
    assert_empty(base);
}

#[test]
fn nobody_passes_before_the_slow_node_and_nothing_is_left() {
    let base = tempfile::tempdir().unwrap();
    released_only_after(base.path(), &[0, 2], 1);
}

#[test]
fn timeout_names_the_missing_node_and_leaves_nothing() {
    let base = tempfile::tempdir().unwrap();
    // Node 1 arrives first and waits longer, so node 0 (1 s) sees it.
    let first = node(base.path(), 1, 3, 5);
    let arrived = base.path().join("77.0.0/node.1");
    let t = std::time::Instant::now();
    while !arrived.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "node 1 never arrived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let nodes = [node(base.path(), 0, 3, 1), first];
    for (i, (c, _)) in nodes.into_iter().enumerate() {
        let (ok, err) = finish(c);
        assert!(!ok);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        let secs = if i == 0 { 1 } else { 5 };
        assert!(
            err.contains(&format!(
                "launch barrier of step 77.0: timed out after {secs}s waiting for node(s) "
            )),
            "{err}"
        );
        // Node 0 knows exactly who arrived; node 1 sees the files left at its
        // own timeout, which may already lack node 0's.
        let expected = if i == 0 { "node(s) 2 (n3):" } else { "2 (n3):" };
        assert!(err.contains(expected), "{err}");
    }
    assert_empty(base.path());
}

#[test]
fn a_stale_directory_neither_releases_early_nor_blocks() {
    let base = tempfile::tempdir().unwrap();
    // What a killed run of the same step left: every node arrived and node 0
    // released them, with that run's nonces.
    let stale = base.path().join("77.0.0");
    std::fs::create_dir(&stale).unwrap();
    for i in 0..3 {
        std::fs::write(stale.join(format!("node.{i}")), format!("old{i}")).unwrap();
        std::fs::write(stale.join(format!(".tmp.{i}")), "partial").unwrap();
    }
    std::fs::write(stale.join("release"), "old0\nold1\nold2\n").unwrap();
    released_only_after(base.path(), &[1, 2], 0);
}

#[test]
fn a_single_node_step_passes_without_a_barrier_dir() {
    let base = tempfile::tempdir().unwrap();
    let (c, _b) = node(&base.path().join("missing"), 0, 1, 300);
    let (ok, err) = finish(c);
    assert!(ok, "{err}");
}

#[test]
fn a_step_dir_that_is_a_symlink_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), base.path().join("77.0.0")).unwrap();
    let (c, _b) = node(base.path(), 0, 2, 300);
    let (ok, err) = finish(c);
    assert!(!ok);
    assert!(err.contains("is not a directory owned by uid"), "{err}");
}
