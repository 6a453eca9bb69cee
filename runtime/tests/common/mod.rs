//! Shared helpers: busybox bundles in temp dirs, running the built `berth`
//! binary with a per-test state root, waiting for containers.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_tests::proc::wait_until;

/// The runtime under test (`$BERTH_BIN`, else this crate's build).
pub fn berth() -> PathBuf {
    berth_tests::paths::berth_under_test(env!("CARGO_BIN_EXE_berth"))
}
pub const TEST_UID: u32 = 4242;

/// A bundle with a busybox rootfs and its own state root.
pub struct Bundle {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub config: Value,
    pub ids: Vec<String>,
    /// Run berth as the unprivileged test user.
    pub rootless: bool,
}

static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn unique(name: &str) -> String {
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{name}-{}-{n}", std::process::id())
}

/// Populate `rootfs` with busybox and its applet links.
pub fn busybox_rootfs(rootfs: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    let out = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\nuser:x:1000:\n").unwrap();
}

/// The default config (the shape `runc spec` produces), running `args`.
pub fn default_config(args: &[&str]) -> Value {
    // `berth spec`'s configuration, writable so tests can create files.
    let mut c = berth::cli::spec::default_spec(None);
    c["process"]["args"] = json!(args);
    c["root"]["readonly"] = false.into();
    c
}

/// Config for an unprivileged user: user namespace, own id mapped to 0,
/// no network namespace (sysfs is then bind-mounted), no gid=5 on devpts.
pub fn rootless_config(args: &[&str]) -> Value {
    let mut c = berth::cli::spec::default_spec(Some((TEST_UID, TEST_UID)));
    c["process"]["args"] = json!(args);
    c["root"]["readonly"] = false.into();
    c
}

impl Bundle {
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        let dir = PathBuf::from("/tmp/berth-tests").join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        busybox_rootfs(&dir.join("rootfs"));
        let root = dir.join("state");
        Bundle {
            dir,
            root,
            config: default_config(args),
            ids: Vec::new(),
            rootless: false,
        }
    }

    /// A bundle for the unprivileged test user (created if missing).
    pub fn rootless(name: &str, args: &[&str]) -> Bundle {
        ensure_test_user();
        let mut b = Bundle::new(name, args);
        b.config = rootless_config(args);
        b.rootless = true;
        let _ = Command::new("chmod")
            .args(["755", "/tmp/berth-tests"])
            .status();
        Command::new("chown")
            .args(["-R", &format!("{TEST_UID}:{TEST_UID}")])
            .arg(&b.dir)
            .status()
            .unwrap();
        b
    }

    pub fn id(&mut self, name: &str) -> String {
        let id = unique(name);
        self.ids.push(id.clone());
        id
    }

    pub fn write_config(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
        if self.rootless {
            let _ = std::os::unix::fs::chown(
                self.dir.join("config.json"),
                Some(TEST_UID),
                Some(TEST_UID),
            );
        }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// berth with --root set (and as the test user when rootless).
    pub fn cmd(&self) -> Command {
        let mut c = if self.rootless {
            let mut c = berth_tests::user::command(berth());
            c.env("XDG_RUNTIME_DIR", &self.dir);
            c
        } else {
            Command::new(berth())
        };
        c.arg("--root").arg(&self.root);
        c
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        self.cmd().args(args).stdin(Stdio::null()).output().unwrap()
    }

    /// create with the container's stdout going to `<dir>/<id>.out`; the
    /// runtime's stderr goes to a file too (the init inherits it, so a pipe
    /// would stay open for the container's lifetime).
    pub fn create(&self, id: &str) -> Output {
        self.write_config();
        let out = self.out_path(id);
        let errp = self.dir.join(format!("{id}.err"));
        let f = std::fs::File::create(&out).unwrap();
        let e = std::fs::File::create(&errp).unwrap();
        if self.rootless {
            let _ = std::os::unix::fs::chown(&out, Some(TEST_UID), Some(TEST_UID));
            let _ = std::os::unix::fs::chown(&errp, Some(TEST_UID), Some(TEST_UID));
        }
        let status = self
            .cmd()
            .args(["create", "--bundle"])
            .arg(&self.dir)
            .arg("--pid-file")
            .arg(self.pid_file(id))
            .arg(id)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(e)
            .status()
            .unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&errp).unwrap_or_default(),
        }
    }

    /// The pid file `create` writes (removed again when create fails).
    pub fn pid_file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.pid"))
    }

    pub fn out_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.out"))
    }

    pub fn output_of(&self, id: &str) -> String {
        std::fs::read_to_string(self.out_path(id)).unwrap_or_default()
    }

    pub fn state(&self, id: &str) -> Option<Value> {
        let o = self.berth(&["state", id]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)
            .map(|s| s["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Waits (up to 20 s) until the container's output contains `needle`;
    /// returns the output.
    pub fn wait_output(&self, id: &str, needle: &str) -> String {
        // The caller's assertion on the output says what was missing.
        wait_until(Duration::from_secs(20), || {
            self.output_of(id).contains(needle)
        });
        self.output_of(id)
    }

    pub fn wait_stopped(&self, id: &str) {
        assert!(
            wait_until(Duration::from_secs(20), || self.status(id) == "stopped"),
            "container {id} did not stop"
        );
    }

    /// create + start + wait + delete; returns the container's output.
    pub fn run(&mut self, name: &str) -> String {
        let id = self.id(name);
        let o = self.create(&id);
        assert!(
            o.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(self.status(&id), "created");
        let o = self.berth(&["start", &id]);
        assert!(
            o.status.success(),
            "start failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.wait_stopped(&id);
        let o = self.berth(&["delete", &id]);
        assert!(
            o.status.success(),
            "delete failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.output_of(&id)
    }

    /// Run a shell script in the container and return its output.
    pub fn sh(&mut self, script: &str) -> String {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self.run("sh")
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.cmd().args(["delete", "--force", id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Create the unprivileged test user and its subordinate id ranges once.
pub fn ensure_test_user() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // user::ensure serialises test processes itself.
    ONCE.call_once(|| {
        berth_tests::user::ensure().expect("the test user exists");
    });
}

/// First subordinate id of the test user in `file` (/etc/subuid or /etc/subgid).
pub fn sub_start(file: &str) -> u32 {
    ensure_test_user();
    let s = std::fs::read_to_string(file).unwrap();
    s.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3
                && (f[0] == "berth-test" || f[0] == "4242")
                && f[2].parse::<u32>().unwrap_or(0) >= 65536)
                .then(|| f[1].parse().unwrap())
        })
        .expect("berth-test has a subordinate range of 65536")
}

/// Processes whose root directory is inside `dir` (a leaked container).
pub fn processes_rooted_in(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(r) = std::fs::read_link(format!("/proc/{pid}/root")) {
            if r.starts_with(dir) {
                out.push(pid);
            }
        }
        if let Ok(c) = std::fs::read_link(format!("/proc/{pid}/cwd")) {
            if c.starts_with(dir) && pid != std::process::id() as i32 {
                out.push(pid);
            }
        }
    }
    out
}

/// Host mount table lines that mention `dir`.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let s = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let d = dir.to_string_lossy().to_string();
    s.lines()
        .filter(|l| l.contains(&d))
        .map(String::from)
        .collect()
}

/// Assert a failed invocation: non-zero, one line on stderr, no state
/// entry, no mount and no process left behind.
pub fn assert_clean_failure(b: &Bundle, id: &str, o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, got success");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("berth: warning"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {err:?}");
    assert!(
        err.contains(needle),
        "error {err:?} does not mention {needle:?}"
    );
    assert!(!b.root.join(id).exists(), "state entry left behind");
    assert!(!b.pid_file(id).exists(), "pid file left behind");
    assert!(
        host_mounts_under(&b.dir).is_empty(),
        "mounts left behind: {:?}",
        host_mounts_under(&b.dir)
    );
    assert!(
        processes_rooted_in(&b.dir).is_empty(),
        "processes left behind"
    );
}
