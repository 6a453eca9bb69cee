//! `berth run IMAGE` as an unprivileged user: squashfuse mount, a user
//! namespace mapping the user to themselves, no capabilities, and nothing
//! left behind, even when berth is killed.

mod images;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_tests::proc::{wait_until, KillOnDrop};
use berth_tests::user;
use images::stack;

/// A user-owned store and runtime directory, and a site config for them.
struct UserEnv {
    dir: tempfile::TempDir,
    config: PathBuf,
    run_dir: PathBuf,
}

impl UserEnv {
    fn new(registry: &str) -> UserEnv {
        user::ensure().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let (store, run_dir) = (dir.path().join("store"), dir.path().join("run"));
        for d in [&store, &run_dir] {
            std::fs::create_dir(d).unwrap();
            nix::unistd::chown(d, Some(user::UID.into()), Some(user::UID.into())).unwrap();
        }
        let config = dir.path().join("berth.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nuser = \"{}\"\n[registry]\ninsecure = [\"{registry}\"]\n",
                store.display()
            ),
        )
        .unwrap();
        UserEnv {
            dir,
            config,
            run_dir,
        }
    }

    /// `berth ARGS` as the test user.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = user::command(images::berth());
        c.args(args)
            .env("BERTH_CONFIG", &self.config)
            .env("XDG_RUNTIME_DIR", &self.run_dir)
            .env("HOME", self.dir.path())
            .env_remove("BERTH_STORE")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// squashfuse mounts below this environment.
    fn fuse_mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().into_owned();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from)
            .collect()
    }

    fn bundles(&self) -> Vec<String> {
        std::fs::read_dir(self.run_dir.join("berth/bundles"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn users_run_images_as_themselves_without_privileges() {
    let (s, _) = stack();
    let env = UserEnv::new(&s.plain.host());
    let image = format!("{}/berth-test/busybox:latest", s.plain.host());
    let o = env.run(&[
        "run",
        "-q",
        &image,
        "sh",
        "-c",
        "id -u; id -g; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; \
         grep ^ID= /etc/os-release; touch /new 2>/dev/null || echo read-only; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["4242", "4242"], "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("CapBnd:\t0000000000000000"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("ID=berth-test-busybox"), "{out}");
    assert!(out.contains("read-only"), "{out}");
    assert!(env.fuse_mounts().is_empty(), "{:?}", env.fuse_mounts());
    assert!(env.bundles().is_empty(), "{:?}", env.bundles());
    // The user's conversion kept the layers' owners (root), not the user's.
    let images = env.dir.path().join("store/images");
    let sqsh = std::fs::read_dir(&images)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "sqsh"))
        .expect("the pulled image");
    let listing = Command::new("unsquashfs")
        .arg("-lln")
        .arg(&sqsh)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let owners: std::collections::BTreeSet<&str> = listing
        .lines()
        .filter(|l| l.contains("squashfs-root"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(owners.into_iter().collect::<Vec<_>>(), ["0/0"], "{listing}");

    // What needs root on the host is refused in one line, before any mount.
    let o = env.run(&["run", "-q", "--writable", &image, "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--writable needs root"), "{}", text(&o));
    assert!(env.fuse_mounts().is_empty());
}

#[test]
fn a_killed_rootless_run_is_cleaned_up_by_gc() {
    let (s, _) = stack();
    let env = UserEnv::new(&s.plain.host());
    let image = format!("{}/berth-test/busybox:latest", s.plain.host());
    // setpriv execs berth: the child's pid is berth's.
    let mut child = KillOnDrop(
        env.cmd(&["run", "-q", &image, "sleep", "60"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let id = format!("berth-run-{}", child.id());
    let state = || env.run(&["state", &id]);
    let ran = wait_until(Duration::from_secs(30), || {
        let o = state();
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\"running\"")
    });
    assert!(ran, "never ran: {}", text(&state()));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !env.fuse_mounts().is_empty(),
        "the kill left the squashfuse mount"
    );
    let o = env.run(&["gc"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(env.fuse_mounts().is_empty(), "{:?}", env.fuse_mounts());
    assert!(env.bundles().is_empty(), "{:?}", env.bundles());
    assert!(!Path::new(&env.run_dir).join("berth").join(&id).exists());
    assert!(
        !env.run(&["state", &id]).status.success(),
        "the container is gone"
    );
}

#[test]
fn site_hooks_are_skipped_for_users_unless_asked_for() {
    let (s, _) = stack();
    let env = UserEnv::new(&s.plain.host());
    let hooks = env.dir.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::write(
        hooks.join("10-always.json"),
        r#"{"version":"1.0.0","hook":{"path":"/bin/true"},"when":{"always":true},"stages":["createRuntime"]}"#,
    )
    .unwrap();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config = format!("hooks_dir = \"{}\"\n{config}", hooks.display());
    std::fs::write(&env.config, config).unwrap();
    let image = format!("{}/berth-test/busybox:latest", s.plain.host());
    let o = env.run(&["run", "-q", &image, "true"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("skipped for this unprivileged run"),
        "{}",
        text(&o)
    );
    let o = env.run(&["run", "-q", "--annotation", "k=v", &image, "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("need root"), "{}", text(&o));
    assert!(env.fuse_mounts().is_empty() && env.bundles().is_empty());
}
