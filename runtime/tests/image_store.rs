//! The store under concurrency and crashes, load, rmi/gc, the layered tree,
//! and `berth run IMAGE` (run as root).

mod images;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::image::flatten::TreeEntry;
use berth_tests::proc::wait_until;
use images::{stack, Env};
use sha2::Digest as _;

#[test]
fn eight_concurrent_pulls_convert_exactly_once() {
    let (s, c) = stack();
    let env = Env::plain(&s.plain);
    let reference = format!("{}/berth-test/tools:latest", s.plain.host());
    let children: Vec<_> = (0..8)
        .map(|_| {
            env.cmd(&["pull", "--json", "-q", &reference])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut converted = 0;
    for ch in children {
        let out = ch.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["image"]["id"], c.tools.config_digest.as_str());
        converted += (v["converted"] == true) as u32;
    }
    assert_eq!(converted, 1, "exactly one process converts");
    let files = env.store_files();
    let hex = c.tools.config_digest.trim_start_matches("sha256:");
    assert_eq!(
        files,
        [
            format!("images/{hex}.json"),
            format!("images/{hex}.sqsh"),
            "refs/127.0.0.1%3A15000%2Fberth-test%2Ftools%3Alatest.json".into(),
        ]
    );
}

#[test]
fn kill_9_during_conversion_then_pull_again() {
    let (s, c) = stack();
    let env = Env::plain(&s.plain);
    let reference = format!("{}/berth-test/large:latest", s.plain.host());
    let mut child = env
        .cmd(&["pull", "-q", &reference])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The tree is unpacked in RAM (/dev/shm) when there is room, else in the store.
    let ram = berth::image::convert::ram_staging_root();
    let tmp = env.store.join("tmp");
    let prefix = format!("{}-", child.id());
    let ours = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    };
    let staging = || {
        [&tmp, &ram]
            .iter()
            .flat_map(|d| ours(d))
            .any(|p| p.join("rootfs").is_dir())
    };
    // Wait until the conversion has started writing its staging tree.
    let mut ended = false;
    let started = wait_until(Duration::from_secs(120), || {
        staging() || {
            ended = child.try_wait().unwrap().is_some();
            ended
        }
    });
    assert!(!ended, "pull ended before it could be killed");
    assert!(started, "conversion never started");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["images", "--json"])).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "no visible image after the crash"
    );
    let out = env.pull_json(&reference);
    assert!(
        ours(&ram).is_empty(),
        "the killed pull's RAM staging was removed: {:?}",
        ours(&ram)
    );
    assert_eq!(out["converted"], true);
    assert_eq!(out["image"]["id"], c.large.config_digest.as_str());
    assert!(
        env.store_files().iter().all(|f| !f.starts_with("tmp/")),
        "stale work removed: {:?}",
        env.store_files()
    );
}

#[test]
fn load_docker_archive_and_oci_layouts_give_the_pulled_image() {
    let (_, c) = stack();
    let img = &c.busybox;
    for input in [&img.docker_archive, &img.layout_dir, &img.oci_archive] {
        let env = Env::new(&[], &[]);
        let out: serde_json::Value = serde_json::from_str(&env.ok(&[
            "load",
            "--json",
            "-q",
            "--tag",
            "example.org/loaded:v1",
            input.to_str().unwrap(),
        ]))
        .unwrap();
        assert_eq!(
            out["image"]["id"],
            img.config_digest.as_str(),
            "{}",
            input.display()
        );
        assert_eq!(out["converted"], true);
        let inspect: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "example.org/loaded:v1"])).unwrap();
        assert_eq!(inspect["id"], img.config_digest.as_str());
        // The archive may name the image itself (docker save's RepoTags):
        // dropping every reference removes the image with the last one.
        let refs = |env: &Env| -> Vec<String> {
            let v: serde_json::Value =
                serde_json::from_str(&env.ok(&["images", "--json"])).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .flat_map(|i| i["references"].as_array().unwrap().clone())
                .map(|r| r.as_str().unwrap().to_string())
                .collect()
        };
        let all = refs(&env);
        assert!(
            all.contains(&"example.org/loaded:v1".to_string()),
            "{all:?}"
        );
        for (n, r) in all.iter().enumerate() {
            env.ok(&["rmi", r]);
            let images: serde_json::Value =
                serde_json::from_str(&env.ok(&["images", "--json"])).unwrap();
            let expect = if n + 1 == all.len() { 0 } else { 1 };
            assert_eq!(images.as_array().unwrap().len(), expect, "after rmi {r}");
        }
    }
    // An image nobody references (its reference files were deleted by hand)
    // stays until `gc --prune`.
    let env = Env::new(&[], &[]);
    env.ok(&["load", "-q", img.layout_dir.to_str().unwrap()]);
    for e in std::fs::read_dir(env.store.join("refs")).unwrap().flatten() {
        std::fs::remove_file(e.path()).unwrap();
    }
    let report: serde_json::Value = serde_json::from_str(&env.ok(&["gc", "--json"])).unwrap();
    assert_eq!(report["unreferenced"], serde_json::json!([]), "{report}");
    env.ok(&["inspect", &img.config_digest]);
    let report: serde_json::Value =
        serde_json::from_str(&env.ok(&["gc", "--prune", "--json"])).unwrap();
    assert_eq!(
        report["unreferenced"],
        serde_json::json!([img.config_digest.as_str()]),
        "{report}"
    );
    let after: serde_json::Value = serde_json::from_str(&env.ok(&["images", "--json"])).unwrap();
    assert_eq!(after.as_array().unwrap().len(), 0);
}

/// Walks a mounted image into the `expected-tree.json` format.
fn tree(root: &Path) -> Vec<TreeEntry> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::fs::Metadata)>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            out.push((
                format!("/{}", p.strip_prefix(root).unwrap().display()),
                m.clone(),
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut raw = Vec::new();
    walk(root, root, &mut raw);
    let key = |p: &str| p.split('/').map(String::from).collect::<Vec<_>>();
    raw.sort_by_key(|a| key(&a.0));
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, (_, m)) in raw.iter().enumerate() {
        if m.is_file() && m.nlink() > 1 {
            groups.entry(m.ino()).or_default().push(i);
        }
    }
    let mut firsts: Vec<(usize, u64)> = groups
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(ino, v)| (v[0], *ino))
        .collect();
    firsts.sort();
    let group: BTreeMap<u64, u32> = firsts
        .iter()
        .enumerate()
        .map(|(n, (_, ino))| (*ino, n as u32 + 1))
        .collect();
    raw.iter()
        .map(|(p, m)| {
            let full = root.join(p.trim_start_matches('/'));
            let ft = m.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "file"
            };
            TreeEntry {
                path: p.clone(),
                kind: kind.into(),
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: ft.is_file().then_some(m.len()),
                sha256: ft
                    .is_file()
                    .then(|| hex::encode(sha2::Sha256::digest(std::fs::read(&full).unwrap()))),
                target: ft
                    .is_symlink()
                    .then(|| std::fs::read_link(&full).unwrap().display().to_string()),
                hardlink_group: group.get(&m.ino()).copied().filter(|_| ft.is_file()),
            }
        })
        .collect()
}

#[test]
fn layered_image_flattens_to_the_expected_tree() {
    let (s, c) = stack();
    let env = Env::plain(&s.plain);
    let out = env.pull_json(&format!("{}/berth-test/layered:latest", s.plain.host()));
    let hex = out["image"]["id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let sqsh = env.store.join(format!("images/{hex}.sqsh"));
    let mnt = env.dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // The kernel's squashfs (squashfuse does not report inode numbers, so
    // hardlinks would be invisible); mount(8) sets up the loop with autoclear.
    let st = std::process::Command::new("mount")
        .args(["-t", "squashfs", "-o", "loop,ro"])
        .arg(&sqsh)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount the image");
    let got = tree(&mnt);
    let _ = std::process::Command::new("umount").arg(&mnt).status();
    let want: Vec<TreeEntry> =
        serde_json::from_slice(&std::fs::read(&c.layered_expected_tree).unwrap()).unwrap();
    let (g, w): (BTreeMap<_, _>, BTreeMap<_, _>) = (
        got.iter().map(|e| (e.path.clone(), e)).collect(),
        want.iter().map(|e| (e.path.clone(), e)).collect(),
    );
    for (p, e) in &w {
        assert_eq!(g.get(p), Some(e), "entry {p}");
    }
    assert_eq!(
        g.keys().collect::<Vec<_>>(),
        w.keys().collect::<Vec<_>>(),
        "no extra entries"
    );
}

#[test]
fn run_image_returns_the_container_exit_code_without_network() {
    let (s, _) = stack();
    let env = Env::plain(&s.plain);
    let reference = format!("{}/berth-test/busybox:latest", s.plain.host());
    let o = env
        .cmd(&[
            "run",
            "-q",
            "--env",
            "GREETING=hello",
            &reference,
            "/bin/sh",
            "-c",
            "echo $GREETING; exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hello");
    // Cached: works with --pull=never against a config whose registry is unreachable.
    let offline = Env {
        dir: tempfile::tempdir().unwrap(),
        config: env.dir.path().join("none.toml"),
        store: env.store.clone(),
    };
    std::fs::write(&offline.config, "").unwrap();
    let o = offline
        .cmd(&["run", "--pull", "never", &reference, "/bin/true"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let child = offline
        .cmd(&[
            "run",
            "--writable",
            &reference,
            "/bin/sh",
            "-c",
            "echo x > /new && cat /new",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let run_id = format!("berth-run-{}", child.id());
    let o = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "x");
    // Its state, bundle and overlay scratch are gone.
    assert!(!Path::new("/run/berth").join(&run_id).exists());
    assert!(!berth::cli::image_run::bundles_dir().join(&run_id).exists());
    let err = offline.fails(&[
        "run",
        "--pull",
        "never",
        "example.org/absent:v1",
        "/bin/true",
    ]);
    assert!(
        err.contains("example.org/absent:v1") && err.contains("not in the image store"),
        "{err}"
    );
    // The image was mounted in a private mount namespace, so a leak would
    // show as a loop device still backed by the store's squashfs file.
    let loops = berth_tests::leaks::loop_devices_under(&env.store);
    assert!(loops.is_empty(), "loop devices left: {loops:?}");
}
