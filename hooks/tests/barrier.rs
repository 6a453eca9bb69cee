//! The launch barrier hook run as real processes, one per simulated node,
//! against a temporary "shared" directory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The directory of step 77.0 (restart 0) in `base`.
fn step_dir(base: &Path) -> PathBuf {
    base.join("77.0.0")
}

/// What node `n`'s arrival file holds (its nonce), if it exists.
fn arrival(base: &Path, n: u32) -> Option<String> {
    std::fs::read_to_string(step_dir(base).join(format!("node.{n}"))).ok()
}

/// Polls `cond` every 5 ms until it holds; fails when `child` exits first or
/// after 10 s.
fn wait_until(child: &mut Child, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("{what}: the hook exited first ({status}): {err}");
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{what}: not in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until node `n` (`child`) has written its arrival file, holding a
/// nonce other than `stale` (what an earlier run left there).
fn arrived(base: &Path, n: u32, child: &mut Child, stale: Option<&str>) {
    wait_until(child, &format!("node {n} arrives"), || {
        arrival(base, n).is_some_and(|a| !a.is_empty() && Some(a.as_str()) != stale)
    });
}

/// The voluntary context switches of process `pid` (its main thread): one
/// per sleep between two polls of the barrier.
fn voluntary_switches(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no voluntary_ctxt_switches in /proc/{pid}/status"))
}

/// Checks node `n` (`child`) is blocked at the barrier: it has arrived (its
/// arrival file holds a fresh nonce), has then slept between polls at least
/// 3 more times (BARRIER_POLL_MS=20), and has still not exited.
fn still_waiting(base: &Path, n: u32, child: &mut Child, stale: Option<&str>, what: &str) {
    arrived(base, n, child, stale);
    let pid = child.id();
    let before = voluntary_switches(pid);
    wait_until(child, &format!("{what}: polls"), || {
        voluntary_switches(pid) >= before + 3
    });
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
    // What an earlier run left: a stale arrival is not this run's.
    let stale: Vec<_> = first.iter().map(|n| arrival(base, *n)).collect();
    let mut nodes: Vec<_> = first.iter().map(|n| node(base, *n, 3, 300)).collect();
    for ((n, old), (c, _)) in first.iter().zip(&stale).zip(nodes.iter_mut()) {
        let what = format!("node {n} before node {last}");
        still_waiting(base, *n, c, old.as_deref(), &what);
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
    let mut first = node(base.path(), 1, 3, 5);
    arrived(base.path(), 1, &mut first.0, None);
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
    let stale = step_dir(base.path());
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
    std::os::unix::fs::symlink(elsewhere.path(), step_dir(base.path())).unwrap();
    let (c, _b) = node(base.path(), 0, 2, 300);
    let (ok, err) = finish(c);
    assert!(!ok);
    assert!(err.contains("is not a directory owned by uid"), "{err}");
}
