//! End-to-end tests of the SSH hook (`--container-ssh`) on the real cluster,
//! as the unprivileged job user whose keys `berth ssh-keygen` made.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_tests::e2e::{self, Env, TestHook};
use berth_tests::leaks::assert_clean;
use berth_tests::{paths, proc, user};

/// The job user's berth key directory (berth's `ssh_keygen::KEYS_DIR`).
fn keys_dir() -> PathBuf {
    PathBuf::from(format!("/home/{}/.local/share/berth/ssh", user::NAME))
}

/// The shared e2e environment, with the job user's keys made by
/// `berth ssh-keygen`.
fn env() -> Env {
    let e = e2e::env();
    let berth = paths::berth_bin().display().to_string();
    let out = e
        .as_user(&berth, &["ssh-keygen", "--overwrite"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e
}

/// Processes of the SSH hook still running anywhere on this host (both test
/// nodes share its pid namespace): dropbear servers and sessions, clients,
/// keepers.
fn ssh_processes() -> Vec<(i32, String)> {
    proc::with_cmdline(|cmd| cmd.contains("/opt/berth/ssh/") || cmd.contains("berth-hook-ssh"))
}

fn assert_no_ssh_left() {
    let gone = proc::wait_until(Duration::from_secs(10), || ssh_processes().is_empty());
    assert!(gone, "SSH processes left: {:?}", ssh_processes());
}

#[test]
fn task_0_runs_a_command_in_the_other_nodes_container() {
    let e = env();
    let n2 = e
        .stack
        .cluster
        .second_node()
        .expect("the test cluster has node 2");
    let partition = e.stack.cluster.multi_partition().unwrap().to_string();
    // By name: the container has the host's /etc/hosts, where the cluster
    // names node 2, as a site's name service would.
    let peer = &n2.name;
    // The barrier hook holds every task until both containers (and their
    // dropbear) are up, so task 0 may connect at once. The other task keeps
    // its node's step (and so its container) alive until task 0 is done,
    // signalled through a file in the shared home.
    let done = e2e::user_dir(Path::new(&format!("/home/{}", user::NAME)));
    let flag = done.path().join("done");
    let script = format!(
        "if [ \"$SLURM_NODEID\" = 0 ]; then ssh {peer} 'cat /etc/os-release; hostname; id -u'; rc=$?; touch {f}; exit $rc; \
         else i=0; while [ ! -e {f} ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done; fi",
        f = flag.display()
    );
    let out = e.srun(&[
        "-p",
        &partition,
        "-N",
        "2",
        "--container-image",
        &e.image,
        "--container-ssh",
        "sh",
        "-c",
        &script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "step failed: {stderr}");
    assert!(
        stdout.contains("NAME=\"berth-test-busybox\""),
        "ran in the image: {stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == n2.name),
        "ran on node 2: {stdout}"
    );
    assert!(
        stdout.lines().any(|l| l == user::UID.to_string()),
        "as the job user: {stdout}"
    );
    assert_no_ssh_left();
    assert_clean();
}

/// Moves the user's keys away, and back when dropped.
struct KeysAway(PathBuf);

impl Drop for KeysAway {
    fn drop(&mut self) {
        let _ = std::fs::rename(&self.0, keys_dir());
    }
}

#[test]
fn missing_keys_fail_the_step_with_one_clear_line() {
    let e = env();
    let away = KeysAway(keys_dir().with_extension("away"));
    std::fs::rename(keys_dir(), &away.0).unwrap();
    let out = e.srun(&["--container-image", &e.image, "--container-ssh", "true"]);
    drop(away);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err.lines().filter(|l| l.contains("berth:")).collect();
    assert_eq!(ours.len(), 1, "one line from berth: {err}");
    assert!(
        ours[0].contains("no SSH keys for uid 4242") && ours[0].contains("run `berth ssh-keygen`"),
        "{err}"
    );
    assert_no_ssh_left();
    assert_clean();
}

#[test]
fn dropbear_dies_when_a_later_hook_fails_the_create() {
    let e = env();
    let image = e.busybox_tagged("ssh-fail");
    // Sorts after 40-ssh.json: dropbear runs when it fails, and it first
    // copies dropbear's pid file (pid and start time).
    let out_dir = tempfile::tempdir().unwrap();
    let seen = out_dir.path().join("dropbear.pid");
    let script = format!(
        "cat {}/bundles/slurm-*/ssh/dropbear.pid > {}; exit 1",
        berth_tests::leaks::STATE_ROOT,
        seen.display()
    );
    let _hook = TestHook::install(
        "ssh-later-failure",
        &serde_json::json!({
            "version": "1.0.0",
            "hook": {"path": "/bin/sh", "args": ["sh", "-c", script]},
            "when": {"annotations": {
                "^org\\.opencontainers\\.image\\.ref\\.name$": ":ssh-fail$",
            }},
            "stages": ["createRuntime"],
        }),
    );
    let out = e.srun(&["--container-image", &image, "--container-ssh", "true"]);
    assert!(!out.status.success(), "the create fails");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("createRuntime hook /bin/sh failed"), "{err}");
    let text = std::fs::read_to_string(&seen).unwrap();
    let pid: i32 = text
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("dropbear was running: {text:?}"));
    assert_no_ssh_left();
    assert!(!proc::is_alive(pid), "dropbear {pid} is gone");
    assert_clean();
}
