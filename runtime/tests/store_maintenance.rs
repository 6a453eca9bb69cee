//! Store upkeep: corrupt metadata, leftovers of killed writers, held locks,
//! ambiguous id prefixes, and the system store read before the user store.

mod images;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use berth_tests::proc::{wait_for, wait_until, KillOnDrop};
use images::{stack, Env};

/// Copies a published image under a new id (same first 12 hex digits plus
/// `suffix`), as a second image whose id shares a prefix with the first.
fn clone_image(store: &Path, id: &str, suffix: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap();
    let new = format!("{}{}", &hex[..12], suffix);
    assert_eq!(new.len(), 64);
    let images = store.join("images");
    std::fs::copy(
        images.join(format!("{hex}.sqsh")),
        images.join(format!("{new}.sqsh")),
    )
    .unwrap();
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images.join(format!("{hex}.json"))).unwrap())
            .unwrap();
    meta["id"] = format!("sha256:{new}").into();
    std::fs::write(images.join(format!("{new}.json")), meta.to_string()).unwrap();
    new
}

/// Holds an flock on `path` in a child process until it is killed.
fn hold_lock(path: &Path) -> Holder {
    use std::os::unix::process::CommandExt;
    // -o: only flock(1) itself holds the lock, so killing it releases it; its
    // own process group, so the sleep goes too.
    let child = Command::new("flock")
        .arg("-o")
        .arg(path)
        .args(["sleep", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // Guarded before waiting, so a failed wait does not leak it.
    let holder = Holder(child);
    // flock(1) creates and locks the file before running sleep.
    assert!(
        wait_until(Duration::from_secs(10), || is_locked(path)),
        "flock did not take {}",
        path.display()
    );
    holder
}

/// A lock held by a flock(1) process group, released (group killed) on drop.
struct Holder(Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let group = nix::unistd::Pid::from_raw(-(self.0.id() as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn is_locked(path: &Path) -> bool {
    path.exists()
        && Command::new("flock")
            .args(["-n", "-E", "42"])
            .arg(path)
            .arg("true")
            .status()
            .unwrap()
            .code()
            == Some(42)
}

fn age(path: &Path, ago: &str) {
    assert!(Command::new("touch")
        .arg("-d")
        .arg(ago)
        .arg(path)
        .status()
        .unwrap()
        .success());
}

#[test]
fn gc_repairs_corrupt_metadata_and_collects_leftovers_but_not_held_locks() {
    let (_, c) = stack();
    let env = Env::new(&[], &[]);
    let archive = c.busybox.docker_archive.to_str().unwrap();
    env.ok(&["load", "-q", "--tag", "example.org/keep:v1", archive]);
    let id = c.busybox.config_digest.clone();
    let hex = id.strip_prefix("sha256:").unwrap().to_string();
    let images = env.store.join("images");

    // Two ids sharing a 12-digit prefix: the short form is refused, not guessed.
    let twin = clone_image(&env.store, &id, &"0".repeat(52));
    let err = env.fails(&["inspect", &hex[..12]]);
    assert!(
        err.contains("ambiguous") && err.contains("give more digits"),
        "{err}"
    );
    env.ok(&["inspect", &hex[..20]]);

    // Corrupt metadata: listing still works and names the bad file; gc removes it.
    let bad = clone_image(&env.store, &id, &"1".repeat(52));
    std::fs::write(images.join(format!("{bad}.json")), b"{not json").unwrap();
    let o = env.run(&["images", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("{bad}.json")));

    // Leftovers: an old temp file goes, a fresh one (a write in progress) stays;
    // a lock of an absent image goes unless someone holds it.
    let old_tmp = env.store.join("refs/x.json.999.berth-tmp");
    let new_tmp = env.store.join("refs/y.json.998.berth-tmp");
    std::fs::write(&old_tmp, b"{}").unwrap();
    std::fs::write(&new_tmp, b"{}").unwrap();
    age(&old_tmp, "2 hours ago");
    let free_lock = env.store.join(format!("locks/{}.lock", "2".repeat(64)));
    std::fs::write(&free_lock, b"").unwrap();
    let held_lock = env.store.join(format!("locks/{}.lock", "3".repeat(64)));
    let holder = hold_lock(&held_lock);
    // An orphan squashfs whose lock is held (a conversion publishing it) stays.
    let orphan = "4".repeat(64);
    std::fs::copy(
        images.join(format!("{hex}.sqsh")),
        images.join(format!("{orphan}.sqsh")),
    )
    .unwrap();
    let orphan_lock = env.store.join(format!("locks/{orphan}.lock"));
    let orphan_holder = hold_lock(&orphan_lock);

    let report: serde_json::Value = serde_json::from_str(&env.ok(&["gc", "--json"])).unwrap();
    assert_eq!(
        report["corrupt"],
        serde_json::json!([format!("sha256:{bad}")]),
        "{report}"
    );
    let leftovers = report["leftovers"].to_string();
    assert!(leftovers.contains("x.json.999.berth-tmp"), "{report}");
    assert!(!leftovers.contains("y.json.998"), "{report}");
    assert!(leftovers.contains(&"2".repeat(64)), "{report}");
    assert!(!leftovers.contains(&"3".repeat(64)), "{report}");
    assert!(!old_tmp.exists() && new_tmp.exists() && !free_lock.exists() && held_lock.exists());
    assert!(!images.join(format!("{bad}.json")).exists());
    assert!(!images.join(format!("{bad}.sqsh")).exists());
    assert!(
        images.join(format!("{orphan}.sqsh")).exists(),
        "gc removed a locked image"
    );
    assert!(images.join(format!("{twin}.sqsh")).exists());

    // Once the conversion is gone, its orphan is collected.
    drop(orphan_holder);
    drop(holder);
    let report: serde_json::Value = serde_json::from_str(&env.ok(&["gc", "--json"])).unwrap();
    assert_eq!(
        report["orphans"],
        serde_json::json!([format!("sha256:{orphan}")]),
        "{report}"
    );
    assert!(!images.join(format!("{orphan}.sqsh")).exists());
    // The tagged image survives everything.
    env.ok(&["inspect", "example.org/keep:v1"]);
}

#[test]
fn system_store_is_read_before_the_user_store() {
    let (_, c) = stack();
    berth_tests::user::ensure().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The test user must reach its store and the system store below.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let system = dir.path().join("system");
    let user_store = dir.path().join("user");
    std::fs::create_dir(&user_store).unwrap();
    let uid = berth_tests::user::UID;
    nix::unistd::chown(&user_store, Some(uid.into()), Some(uid.into())).unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nsystem = \"{}\"\nuser = \"{}\"\n",
            system.display(),
            user_store.display()
        ),
    )
    .unwrap();
    let berth = |as_user: bool, args: &[&str]| -> std::process::Output {
        let mut cmd = if as_user {
            berth_tests::user::command(images::berth())
        } else {
            Command::new(images::berth())
        };
        let o = cmd
            .args(args)
            .env("BERTH_CONFIG", &config)
            .env_remove("BERTH_STORE")
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "berth {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o
    };
    let same = "example.org/site/app:v1";
    // Root (an admin) loads busybox into the system store; the user loads the
    // tools image into their own store under the same name.
    berth(
        false,
        &[
            "load",
            "-q",
            "--tag",
            same,
            c.busybox.docker_archive.to_str().unwrap(),
        ],
    );
    let tools: PathBuf = c.tools.docker_archive.clone();
    // The archive must be readable by the user.
    let copy = dir.path().join("tools.tar");
    std::fs::copy(&tools, &copy).unwrap();
    std::fs::set_permissions(&copy, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    berth(true, &["load", "-q", "--tag", same, copy.to_str().unwrap()]);
    assert!(system
        .join("images")
        .join(format!(
            "{}.sqsh",
            c.busybox.config_digest.strip_prefix("sha256:").unwrap()
        ))
        .exists());
    let inspect: serde_json::Value =
        serde_json::from_slice(&berth(true, &["inspect", same]).stdout).unwrap();
    assert_eq!(inspect["id"], c.busybox.config_digest.as_str(), "{inspect}");
    // The user's own image stays reachable by id.
    let tools_id = c.tools.config_digest.clone();
    let inspect: serde_json::Value =
        serde_json::from_slice(&berth(true, &["inspect", &tools_id]).stdout).unwrap();
    assert_eq!(inspect["id"], tools_id.as_str());
}

#[test]
fn gc_removes_the_container_of_a_killed_berth_run() {
    let (s, _) = stack();
    let env = Env::new(&[s.plain.host()], &[]);
    let reference = format!("{}/berth-test/busybox:latest", s.plain.host());
    let mut child = KillOnDrop(
        env.cmd(&["run", "-q", &reference, "sleep", "60"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let id = format!("berth-run-{}", child.id());
    let state_dir = Path::new("/run/berth").join(&id);
    let bundle = berth::cli::image_run::bundles_dir().join(&id);
    // The init's pid, once the container runs.
    let init = wait_for(Duration::from_secs(30), || {
        let o = env.run(&["state", &id]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        (o.status.success() && v["status"] == "running").then(|| v["pid"].as_i64().unwrap() as i32)
    })
    .expect("the container never ran");
    child.kill().unwrap(); // SIGKILL: berth cannot clean up
    child.wait().unwrap();
    assert!(
        state_dir.exists() && bundle.exists(),
        "left behind by the kill"
    );
    env.ok(&["gc"]);
    assert!(!state_dir.exists(), "state removed");
    assert!(!bundle.exists(), "bundle removed");
    let alive = berth::state::proc_stat(init).is_some_and(|(st, _)| st != b'Z' && st != b'X');
    assert!(!alive, "the container's init {init} was killed");
}

/// A `slurm-create` killed while creating its container leaves its `.ID.lock`
/// beside the bundles: gc removes it, but never the lock of a step that is
/// creating its container now.
#[test]
fn gc_removes_the_creation_lock_of_a_killed_slurm_create_not_a_held_one() {
    let env = Env::new(&[], &[]);
    let bundles = berth::cli::image_run::bundles_dir();
    std::fs::create_dir_all(&bundles).unwrap();
    let job = std::process::id();
    let left = bundles.join(format!(".slurm-{job}.0.lock"));
    let held = bundles.join(format!(".slurm-{job}.1.lock"));
    std::fs::write(&left, "").unwrap();
    let holder = hold_lock(&held);
    env.ok(&["gc"]);
    // Checked before cleaning up, so a failure leaves nothing behind.
    let (gone, kept) = (!left.exists(), held.exists());
    drop(holder);
    let _ = std::fs::remove_file(&held);
    let _ = std::fs::remove_file(&left);
    assert!(gone, "the free lock {} was left", left.display());
    assert!(kept, "a held creation lock must stay");
}
