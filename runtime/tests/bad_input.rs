//! Bad input: one-line error, non-zero exit, no state entry, no mount and
//! no process left.

mod common;
use common::*;
use serde_json::json;

#[test]
fn malformed_config_names_line_and_column() {
    let mut b = Bundle::new("malformed", &["true"]);
    let id = b.id("bad");
    std::fs::write(
        b.dir.join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {,\n}\n",
    )
    .unwrap();
    let o = b
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&id)
        .output()
        .unwrap();
    assert_clean_failure(&b, &id, &o, "line 3 column");
}

#[test]
fn missing_rootfs() {
    let mut b = Bundle::new("norootfs", &["true"]);
    b.config["root"]["path"] = "does-not-exist".into();
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "does-not-exist");
}

#[test]
fn relative_mount_destination() {
    let mut b = Bundle::new("relmount", &["true"]);
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "relative/path", "type": "tmpfs", "source": "tmpfs"}));
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "not absolute");
}

#[test]
fn invalid_oci_version() {
    // runtime-spec "Valid values": an invalid ociVersion MUST be an error
    // (runtime-tools validation/misc_props).
    let mut b = Bundle::new("badversion", &["true"]);
    b.config["ociVersion"] = "invalid".into();
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "ociVersion");
}

#[test]
fn unknown_namespace_type() {
    let mut b = Bundle::new("badns", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "bogus"}));
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "bogus");
}

#[test]
fn duplicate_id_leaves_the_first_alone() {
    let mut b = Bundle::new("dup", &["sleep", "30"]);
    let id = b.id("dup");
    assert!(b.create(&id).status.success());
    let before = b.state(&id).unwrap();
    let o = b.create(&id);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"));
    assert_eq!(b.state(&id).unwrap()["pid"], before["pid"]);
    assert_eq!(b.status(&id), "created");
}

#[test]
fn missing_hook_binary() {
    let mut b = Bundle::new("nohook", &["true"]);
    b.config["hooks"] = json!({"prestart": [{"path": "/nonexistent/hook"}]});
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "/nonexistent/hook");
}

#[test]
fn failure_after_fork_leaves_nothing() {
    // A bad mount fails inside the init, after namespaces and some mounts exist.
    let mut b = Bundle::new("latefail", &["true"]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/nonexistent-source", "options": ["bind"]}));
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "/nonexistent-source");
    // And a missing executable.
    b.config["mounts"].as_array_mut().unwrap().pop();
    b.config["process"]["args"] = json!(["/no/such/binary"]);
    let id = b.id("y");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "not found");
}

#[test]
fn missing_interpreter_or_loader_fails_create() {
    let mut b = Bundle::new("interp", &["/bin/script"]);
    let exe = |b: &Bundle, name: &str| {
        std::fs::set_permissions(
            b.rootfs().join("bin").join(name),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap()
    };
    std::fs::write(b.rootfs().join("bin/script"), "#!/no/such/sh -e\necho hi\n").unwrap();
    exe(&b, "script");
    let id = b.id("script");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "script for /no/such/sh");
    // A dynamic executable in an image without its loader (the busybox
    // rootfs has no C library): execve would only say "no such file".
    std::fs::copy("/usr/bin/true", b.rootfs().join("bin/dynamic")).unwrap();
    b.config["process"]["args"] = json!(["/bin/dynamic"]);
    let id = b.id("loader");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "needs the program loader /lib");
}

/// An execve failure nothing could foresee (a file the kernel cannot run)
/// after `start`: without poststart hooks `start` may have returned already,
/// so the reason also goes to the container's stderr; with them, `start`
/// waits for execve and fails.
#[test]
fn exec_failure_after_start_is_reported() {
    let mut b = Bundle::new("noexec", &["/bin/junk"]);
    std::fs::write(b.rootfs().join("bin/junk"), "neither ELF nor #!\n").unwrap();
    std::fs::set_permissions(
        b.rootfs().join("bin/junk"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let id = b.id("plain");
    assert!(b.create(&id).status.success());
    let o = b.berth(&["start", &id]);
    b.wait_stopped(&id);
    // `start` reads whatever the init wrote before it looked: an execve
    // failing that fast may still reach it.
    let err = if o.status.success() {
        std::fs::read_to_string(b.dir.join(format!("{id}.err"))).unwrap()
    } else {
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(
        err.contains("exec /bin/junk") && err.contains("Exec format error"),
        "{err:?}"
    );
    assert!(b.berth(&["delete", &id]).status.success());

    b.config["hooks"] = json!({"poststart": [{"path": "/bin/true"}]});
    let id = b.id("hooked");
    assert!(b.create(&id).status.success());
    let o = b.berth(&["start", &id]);
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && msg.contains("Exec format error"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1, "{msg}");
    let err = std::fs::read_to_string(b.dir.join(format!("{id}.err"))).unwrap();
    assert!(!err.contains("berth: exec"), "told twice: {err:?}");
}

#[test]
fn invalid_id() {
    let b = Bundle::new("badid", &["true"]);
    b.write_config();
    let o = b
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg("../escape")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(!b.dir.join("escape").exists());
}

/// Refused on purpose, each with one line and nothing left behind: a user
/// namespace with only uid (or only gid) mappings, and mounts without a
/// mount namespace of berth's making.
#[test]
fn half_mappings_and_mounts_without_a_mount_namespace() {
    let mut b = Bundle::new("refusals", &["true"]);
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    let id = b.id("uidonly");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "without gid mappings");

    let mut b = Bundle::new("nomntns", &["true"]);
    let ns: Vec<serde_json::Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "mount")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = json!(ns);
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "without a mount namespace");
}
