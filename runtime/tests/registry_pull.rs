//! `berth pull` against the harness's real registries (run as root).

mod images;

use std::io::Write;
use std::process::Stdio;

use berth_tests::registry::{PASSWORD, USER};
use images::{stack, Env};

#[test]
fn pull_by_tag_then_by_digest_converts_once() {
    let (s, c) = stack();
    let env = Env::plain(&s.plain);
    let tag_ref = format!("{}/berth-test/busybox:latest", s.plain.host());
    let first = env.pull_json(&tag_ref);
    assert_eq!(first["converted"], true);
    assert_eq!(first["manifest"], c.busybox.manifest_digest.as_str());
    assert_eq!(first["image"]["id"], c.busybox.config_digest.as_str());
    let by_digest = format!(
        "{}/berth-test/busybox@{}",
        s.plain.host(),
        c.busybox.manifest_digest
    );
    let second = env.pull_json(&by_digest);
    assert_eq!(
        second["converted"], false,
        "same image, no second conversion"
    );
    assert_eq!(second["image"]["id"], first["image"]["id"]);
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["images", "--json"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["references"].as_array().unwrap().len(), 2);
    assert!(
        env.store_files().iter().all(|f| !f.starts_with("tmp/")),
        "no work left: {:?}",
        env.store_files()
    );
}

/// A registry named by host name, not address: resolved through
/// /etc/hosts (the static build uses glibc's built-in `files dns` sources
/// only, runtime/src/nss.rs; scripts/test runs this against that build).
#[test]
fn a_registry_named_by_host_name_resolves() {
    let (s, c) = stack();
    let host = s.plain.host().replace("127.0.0.1", "localhost");
    let env = Env::new(std::slice::from_ref(&host), &[]);
    let pulled = env.pull_json(&format!("{host}/berth-test/busybox:latest"));
    assert_eq!(pulled["image"]["id"], c.busybox.config_digest.as_str());
}

#[test]
fn index_resolves_to_the_host_platform() {
    let (s, c) = stack();
    let env = Env::plain(&s.plain);
    let out = env.pull_json(&format!(
        "{}/berth-test/busybox-index:latest",
        s.plain.host()
    ));
    assert_eq!(out["manifest"], c.busybox_index.manifest_digest.as_str());
    assert_eq!(
        out["image"]["id"],
        c.busybox.config_digest.as_str(),
        "the host entry is the busybox manifest"
    );
}

fn pull_with_password(env: &Env, reference: &str, password: &str) -> std::process::Output {
    let mut child = env
        .cmd(&[
            "pull",
            "-q",
            "--username",
            USER,
            "--password-stdin",
            reference,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn basic_auth_with_right_and_wrong_password() {
    let (s, c) = stack();
    let env = Env::new(&[], &[s.secure.ca_file().unwrap()]);
    let reference = format!("{}/berth-test/busybox:latest", s.secure.host());
    let bad = pull_with_password(&env, &reference, "wrong-password");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains(&reference) && err.contains("refused credentials (401)"),
        "{err}"
    );
    assert!(
        env.store_files().is_empty(),
        "store unchanged: {:?}",
        env.store_files()
    );
    let none = env.fails(&["pull", "-q", &reference]);
    assert!(none.contains("requires credentials"), "{none}");
    let good = pull_with_password(&env, &reference, PASSWORD);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains(&c.busybox.config_digest));
}

#[test]
fn credentials_come_from_the_docker_auth_file() {
    use base64::Engine;
    let (s, _) = stack();
    let env = Env::new(&[], &[s.secure.ca_file().unwrap()]);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::create_dir_all(env.dir.path().join(".docker")).unwrap();
    std::fs::write(
        env.dir.path().join(".docker/config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            s.secure.host()
        ),
    )
    .unwrap();
    env.ok(&[
        "pull",
        "-q",
        &format!("{}/berth-test/busybox:latest", s.secure.host()),
    ]);
}

#[test]
fn self_signed_tls_needs_the_ca() {
    let (s, _) = stack();
    let reference = format!("{}/berth-test/busybox:latest", s.secure.host());
    let env = Env::new(&[], &[]);
    let err = env.fails(&["pull", "-q", &reference]);
    assert!(
        err.contains(&reference) && err.contains("TLS error"),
        "{err}"
    );
    assert!(env.store_files().is_empty());
    let ca = s.secure.ca_file().unwrap();
    let with_flag = env.run(&[
        "pull",
        "-q",
        "--ca-file",
        ca.to_str().unwrap(),
        "--username",
        USER,
        &reference,
    ]);
    // --username without --password-stdin is refused before any network use.
    assert!(!with_flag.status.success());
    let mut child = env
        .cmd(&[
            "pull",
            "-q",
            "--ca-file",
            ca.to_str().unwrap(),
            "--username",
            USER,
            "--password-stdin",
            &reference,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(PASSWORD.as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
}

#[test]
fn a_missing_image_is_a_404_and_changes_nothing() {
    let (s, _) = stack();
    let env = Env::plain(&s.plain);
    let reference = format!("{}/berth-test/no-such-image:latest", s.plain.host());
    let err = env.fails(&["pull", "-q", &reference]);
    assert!(
        err.contains(&reference) && err.contains("not found (404)"),
        "{err}"
    );
    assert!(env.store_files().is_empty());
}
