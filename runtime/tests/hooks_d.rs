//! The site's hooks.d with the real `berth run IMAGE` (run as root): hooks
//! selected by annotation and by command, injected into a writable overlay
//! while the container's root stays read-only, and a broken or untrusted
//! directory refused with one line and nothing left behind.

mod images;

use std::path::{Path, PathBuf};

use images::{stack, Env};

/// An image env whose site config names a hooks dir with `files`.
struct Site {
    env: Env,
    hooks: PathBuf,
    out: PathBuf,
    image: String,
}

/// A createRuntime hook, selected by `when`, that saves the state it gets to
/// `out/NAME.json` and writes `/etc/hooked-NAME` into the container's root.
fn hook_file(out: &Path, name: &str, when: &str) -> String {
    let script = format!(
        "state=$(cat); printf '%s' \\\"$state\\\" > {}/{name}.json; \
         bundle=$(printf '%s' \\\"$state\\\" | grep -o '\\\"bundle\\\":\\\"[^\\\"]*' | cut -d'\\\"' -f4); \
         echo {name} > $bundle/rootfs/etc/hooked-{name}",
        out.display()
    );
    format!(
        r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh","args":["sh","-c","{script}"],
            "env":["PATH=/usr/bin:/bin"]}},"when":{when},"stages":["createRuntime"]}}"#
    )
}

fn site(files: &[(&str, String)]) -> Site {
    let (s, _) = stack();
    let env = Env::plain(&s.plain);
    let hooks = env.dir.path().join("hooks.d");
    let out = env.dir.path().join("out");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::create_dir(&out).unwrap();
    for (name, text) in files {
        std::fs::write(hooks.join(name), text).unwrap();
    }
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        format!("hooks_dir = {:?}\n{config}", hooks.display().to_string()),
    )
    .unwrap();
    let image = format!("{}/berth-test/busybox:latest", s.plain.host());
    Site {
        env,
        hooks,
        out,
        image,
    }
}

impl Site {
    /// `berth run [flags] IMAGE CMD...`: (exit code, stdout, stderr).
    fn run(&self, flags: &[&str], cmd: &[&str]) -> (i32, String, String) {
        let mut args = vec!["run", "-q"];
        args.extend(flags);
        args.push(&self.image);
        args.extend(cmd);
        let o = self.env.run(&args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn fired(&self, name: &str) -> Option<serde_json::Value> {
        let text = std::fs::read(self.out.join(format!("{name}.json"))).ok()?;
        Some(serde_json::from_slice(&text).expect("the hook saved the state JSON"))
    }

    fn clear(&self) {
        for e in std::fs::read_dir(&self.out).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
}

#[test]
fn hooks_fire_on_their_annotation_or_command_only_and_root_stays_read_only() {
    let s = site(&[]);
    std::fs::write(
        s.hooks.join("10-ann.json"),
        hook_file(
            &s.out,
            "ann",
            r#"{"annotations":{"^com\\.example\\.marker$":"^yes$"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(
        s.hooks.join("20-cmd.json"),
        hook_file(&s.out, "cmd", r#"{"commands":["^/bin/cat$"]}"#),
    )
    .unwrap();

    // Neither condition holds: no hook, and the plain read-only squashfs root.
    let (code, _, err) = s.run(&["--annotation", "com.example.marker=no"], &["/bin/true"]);
    assert_eq!(code, 0, "{err}");
    assert!(s.fired("ann").is_none() && s.fired("cmd").is_none());

    // The annotation selects the first hook; it wrote into the overlay before
    // pivot_root, and the root is still read-only for the container.
    let (code, out, err) = s.run(
        &["--annotation", "com.example.marker=yes", "--gpus", "0,1"],
        &[
            "/bin/sh",
            "-c",
            "cat /etc/hooked-ann; touch /x 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().collect::<Vec<_>>(), ["ann", "read-only"]);
    let state = s.fired("ann").expect("the annotation hook ran");
    assert_eq!(state["annotations"]["com.example.marker"], "yes");
    assert_eq!(state["annotations"]["com.berth.gpus"], "0,1");
    assert_eq!(state["status"], "creating");
    assert!(s.fired("cmd").is_none(), "the command hook must not run");
    s.clear();

    // The command selects the second hook (args[0] as given).
    let (code, out, err) = s.run(&[], &["/bin/cat", "/etc/hooked-cmd"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "cmd");
    assert!(s.fired("cmd").is_some() && s.fired("ann").is_none());

    // --writable keeps the root writable with hooks too.
    let (code, out, err) = s.run(
        &["--writable"],
        &["/bin/cat", "/etc/hooked-cmd", "/etc/hooked-cmd"],
    );
    assert_eq!((code, out.lines().count()), (0, 2), "{err}");
}

/// The one `berth: error:` line of a failed run, with no bundle or mount left.
fn refused(s: &Site) -> String {
    let child = s
        .env
        .cmd(&["run", "-q", &s.image, "/bin/true"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let bundle = format!("/run/berth/bundles/berth-run-{pid}");
    assert!(!Path::new(&bundle).exists(), "{bundle} left behind");
    assert!(!Path::new(&format!("/run/berth/berth-run-{pid}")).exists());
    // Mounts live in a private namespace: a leak is an attached loop device.
    let loops = berth_tests::leaks::loop_devices_under(&s.env.store);
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
    lines[0].to_string()
}

#[test]
fn a_broken_or_untrusted_hooks_dir_fails_with_one_line_naming_the_file() {
    let s = site(&[
        ("10-ok.json", hook_file(Path::new("/nonexistent"), "ok", r#"{"always":true}"#)),
        (
            "20-bad.json",
            r#"{"version":"1.0.0","hook":{"path":"/bin/sh"},"when":{"always":true},"stages":["prestop"]}"#.into(),
        ),
    ]);
    let err = refused(&s);
    assert!(
        err.starts_with("berth: error: hooks.d file ")
            && err.contains("20-bad.json: stages[0]: unknown stage \"prestop\""),
        "{err}"
    );
    std::fs::write(
        s.hooks.join("20-bad.json"),
        "{\"version\": \"1.0.0\",\n  oops}",
    )
    .unwrap();
    let err = refused(&s);
    assert!(
        err.contains("20-bad.json") && err.contains("line 2 column 3"),
        "{err}"
    );
    std::fs::remove_file(s.hooks.join("20-bad.json")).unwrap();
    // Root trusts only files no one else can change.
    let ok = s.hooks.join("10-ok.json");
    std::os::unix::fs::chown(&ok, Some(4242), None).unwrap();
    let err = refused(&s);
    assert!(
        err.contains("10-ok.json") && err.contains("owned by uid 4242, not root"),
        "{err}"
    );
    std::os::unix::fs::chown(&ok, Some(0), None).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.hooks, std::fs::Permissions::from_mode(0o775)).unwrap();
    let err = refused(&s);
    assert!(err.contains("group- or world-writable"), "{err}");
}

#[test]
fn slurm_create_selects_hooks_by_annotation_and_a_broken_dir_leaves_nothing() {
    // The e2e container cases check that no `slurm-*` container exists while
    // they hold this lock: ours must not appear meanwhile.
    let _lock =
        berth_tests::lock::exclusive(&berth_tests::paths::root().join("containers.lock")).unwrap();
    let s = site(&[]);
    std::fs::write(
        s.hooks.join("10-nodes.json"),
        hook_file(
            &s.out,
            "nodes",
            r#"{"annotations":{"^com\\.berth\\.slurm\\.nnodes$":"^2$"}}"#,
        ),
    )
    .unwrap();
    let id = format!("slurm-{}.0", 900_000_000 + std::process::id() % 1_000_000);
    let config = s.env.config.display().to_string();
    let create = |nnodes: &str| {
        let annotation = format!("com.berth.slurm.nnodes={nnodes}");
        s.env.run(&[
            "slurm-create",
            "--config",
            &config,
            "--id",
            &id,
            "--image",
            &s.image,
            "--uid",
            "0",
            "--gid",
            "0",
            "--no-mount-home",
            "--annotation",
            &annotation,
        ])
    };
    let delete = || s.env.run(&["slurm-delete", "--id", &id]);
    // Whatever assertion fails, no `slurm-*` container outlives the test (the
    // e2e leak checks would blame the next case for it).
    struct Remove<'a>(&'a dyn Fn() -> std::process::Output);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = (self.0)();
        }
    }
    let _remove = Remove(&delete);

    let o = create("1");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        s.fired("nodes").is_none(),
        "nnodes=1 does not select the hook"
    );
    assert!(delete().status.success());

    let o = create("2");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let state = s.fired("nodes").expect("nnodes=2 selects the hook");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["annotations"]["com.berth.slurm.nnodes"], "2");
    assert!(delete().status.success());

    std::fs::write(s.hooks.join("20-bad.json"), "[]").unwrap();
    let o = create("2");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("20-bad.json"), "{err}");
    for left in [
        format!("/run/berth/{id}"),
        format!("/run/berth/bundles/{id}"),
    ] {
        assert!(!Path::new(&left).exists(), "{left} left behind");
    }
    let loops = berth_tests::leaks::loop_devices_under(&s.env.store);
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
}

/// `berth hooks [--json]`, the admin's check: every file in run order with
/// its stages and conditions, or one line naming the broken file.
#[test]
fn berth_hooks_lists_in_run_order_or_names_the_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let hooks = dir.path().join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    let file = |when: &str, stages: &str| {
        format!(
            r#"{{"version":"1.0.0","hook":{{"path":"/bin/true"}},"when":{when},"stages":{stages}}}"#
        )
    };
    std::fs::write(
        hooks.join("20-b.json"),
        file(r#"{"always":true}"#, r#"["poststop"]"#),
    )
    .unwrap();
    std::fs::write(
        hooks.join("10-a.json"),
        file(
            r#"{"annotations":{"^com\\.x$":"^1$"}}"#,
            r#"["createRuntime","poststart"]"#,
        ),
    )
    .unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!("hooks_dir = {:?}\n", hooks.display().to_string()),
    )
    .unwrap();
    let berth = |args: &[&str]| {
        std::process::Command::new(berth_tests::paths::berth_under_test(env!(
            "CARGO_BIN_EXE_berth"
        )))
        .arg("hooks")
        .arg("--config")
        .arg(&config)
        .args(args)
        .output()
        .unwrap()
    };
    let o = berth(&["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let files: Vec<&serde_json::Value> = v.as_array().expect("a JSON list").iter().collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| {
            Path::new(f["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["10-a.json", "20-b.json"]);
    assert_eq!(
        files[0]["stages"],
        serde_json::json!(["createRuntime", "poststart"])
    );
    assert_eq!(files[0]["when"]["annotations"]["^com\\.x$"], "^1$");
    assert_eq!(files[1]["when"]["always"], true);
    let text = berth(&[]);
    assert!(text.status.success());
    assert!(String::from_utf8_lossy(&text.stdout).contains("10-a.json"));

    std::fs::write(
        hooks.join("15-bad.json"),
        file("{}", r#"["createRuntime"]"#),
    )
    .unwrap();
    let o = berth(&["--json"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("15-bad.json") && err.contains("when"), "{err}");
}
