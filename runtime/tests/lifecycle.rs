//! Lifecycle: create/start/state/kill/delete/run and their error cases.

mod common;
use berth_tests::proc::wait_until;
use common::*;
use serde_json::json;

#[test]
fn create_start_state_delete() {
    let mut b = Bundle::new("lifecycle", &["sh", "-c", "echo hello from $$"]);
    let id = b.id("life");
    let o = b.create(&id);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st = b.state(&id).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap();
    assert!(
        pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "init must be a real pid"
    );
    assert_eq!(st["bundle"], b.dir.to_str().unwrap());
    assert!(
        b.output_of(&id).is_empty(),
        "user process must not run before start"
    );
    assert!(b.berth(&["start", &id]).status.success());
    b.wait_stopped(&id);
    assert_eq!(b.output_of(&id).trim(), "hello from 1");
    assert!(b.berth(&["delete", &id]).status.success());
    assert!(!b.root.join(&id).exists());
    let o = b.berth(&["state", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
}

#[test]
fn lifecycle_errors() {
    let mut b = Bundle::new("errors", &["sleep", "30"]);
    let id = b.id("err");
    assert!(b.create(&id).status.success());
    // duplicate id
    let o = b.create(&id);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert!(b.berth(&["start", &id]).status.success());
    assert_eq!(b.status(&id), "running");
    // start twice
    let o = b.berth(&["start", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not created"));
    assert_eq!(b.status(&id), "running", "failed start must have no effect");
    // delete running
    let o = b.berth(&["delete", &id]);
    assert!(!o.status.success());
    assert_eq!(
        b.status(&id),
        "running",
        "failed delete must have no effect"
    );
    // kill, then kill stopped
    assert!(b.berth(&["kill", &id, "KILL"]).status.success());
    b.wait_stopped(&id);
    let o = b.berth(&["kill", &id, "TERM"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));
    assert!(b.berth(&["delete", &id]).status.success());
    // unknown id everywhere
    for args in [
        vec!["start", "nope-x"],
        vec!["state", "nope-x"],
        vec!["kill", "nope-x"],
        vec!["delete", "nope-x"],
    ] {
        let o = b.berth(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("does not exist"),
            "{args:?}"
        );
    }
}

#[test]
fn kill_signals_and_force_delete() {
    let mut b = Bundle::new(
        "kill",
        &[
            "sh",
            "-c",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.05; done",
        ],
    );
    let id = b.id("kill");
    assert!(b.create(&id).status.success());
    assert!(b.berth(&["start", &id]).status.success());
    // The trap is set once "ready" is printed.
    let out = b.wait_output(&id, "ready");
    assert!(out.contains("ready"), "{out}");
    assert!(b.berth(&["kill", &id, "SIGTERM"]).status.success());
    b.wait_stopped(&id);
    assert!(b.output_of(&id).contains("got-term"));
    assert!(b.berth(&["delete", &id]).status.success());
    // --all reaches every process even without a pid namespace, where
    // killing the init alone would leave its child running.
    b.config["linux"]["namespaces"] =
        json!([{"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    b.config["process"]["args"] = json!(["sh", "-c", "sleep 30 & echo child=$!; wait"]);
    let id = b.id("all");
    assert!(b.create(&id).status.success());
    assert!(b.berth(&["start", &id]).status.success());
    let out = b.wait_output(&id, "child=");
    let child: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("child="))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no child pid in {out:?}"));
    assert!(berth::state::process_alive(
        child,
        berth::state::proc_stat(child).unwrap().1
    ));
    assert!(b.berth(&["kill", "--all", &id, "9"]).status.success());
    b.wait_stopped(&id);
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            !berth::state::proc_stat(child).is_some_and(|(s, _)| s != b'Z' && s != b'X')
        }),
        "kill --all left the child {child} running"
    );
    assert!(b.berth(&["delete", &id]).status.success());
    b.config = default_config(&["sh", "-c", "sleep 30 & sleep 30"]);
    let id = b.id("force2");
    assert!(b.create(&id).status.success());
    assert!(b.berth(&["start", &id]).status.success());
    assert!(b.berth(&["delete", "--force", &id]).status.success());
    assert!(!b.root.join(&id).exists());
    // a created (never started) container can be deleted
    let id = b.id("created");
    assert!(b.create(&id).status.success());
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap() as i32;
    assert!(b.berth(&["delete", &id]).status.success());
    assert!(!b.root.join(&id).exists(), "state removed");
    // The init is gone (a zombie at most, until pid 1 reaps it).
    let init = berth::state::proc_stat(pid);
    assert!(
        init.is_none_or(|(state, _)| state == b'Z' || state == b'X'),
        "the created container's init was killed: {init:?}"
    );
}

#[test]
fn stale_state_reads_stopped() {
    let mut b = Bundle::new("stale", &["sleep", "30"]);
    let id = b.id("stale");
    assert!(b.create(&id).status.success());
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap() as i32;
    // Kill the init behind berth's back: the state must still be readable.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    b.wait_stopped(&id);
    assert_eq!(b.state(&id).unwrap()["pid"], 0);
    assert!(b.berth(&["delete", &id]).status.success());
}

#[test]
fn run_waits_and_returns_exit_code() {
    let b = Bundle::new("run", &["sh", "-c", "exit 7"]);
    b.write_config();
    let o = b
        .cmd()
        .args(["run", "--bundle"])
        .arg(&b.dir)
        .arg("run-exit7")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!b.root.join("run-exit7").exists(), "run removes the state");
}

#[test]
fn features_and_version() {
    let o = std::process::Command::new(berth())
        .arg("features")
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
    assert!(std::process::Command::new(berth())
        .arg("--version")
        .status()
        .unwrap()
        .success());
}

#[test]
fn spec_writes_a_runnable_config_once() {
    let mut b = Bundle::new("spec", &["true"]);
    let _ = std::fs::remove_file(b.dir.join("config.json"));
    assert!(b
        .berth(&["spec", "--bundle", b.dir.to_str().unwrap()])
        .status
        .success());
    let again = b.berth(&["spec", "--bundle", b.dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists: remove it first"));
    // The default runs `sh`: with no input it exits at once, successfully.
    let id = b.id("spec");
    let o = b.berth(&["run", "--bundle", b.dir.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// `berth state ID | head -c0`: a reader that went away ends the command
/// quietly (status 0, no panic on stderr), and the container is untouched.
#[test]
fn output_to_a_closed_pipe_is_not_a_panic() {
    let mut b = Bundle::new("epipe", &["sleep", "30"]);
    let id = b.id("epipe");
    assert!(b.create(&id).status.success());
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let o = b
        .cmd()
        .args(["state", &id])
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");
    assert_eq!(b.status(&id), "created");
    assert!(b.berth(&["delete", "--force", &id]).status.success());
}
