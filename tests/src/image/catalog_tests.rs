use super::*;
use crate::image::flatten::TreeEntry;
use crate::image::oci::{read_json_blob, resolve_tag, Index, MEDIA_INDEX};
use crate::image::test_support::{skopeo_json, small, unit_out_dir};
use std::process::Command;

/// Unpacks an image without whiteouts into a temp rootfs (plain tar extraction
/// is enough for the busybox and tools images, which have none).
fn unpack(img: &BuiltImage) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for l in &img.layers {
        let blob =
            fs::File::open(crate::image::oci::blob_path(&img.layout_dir, &l.digest)).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(blob));
        a.set_preserve_permissions(true);
        a.set_overwrite(true);
        a.unpack(root.path()).unwrap();
    }
    root
}

/// Runs `cmd` chrooted into `root` and returns stdout; needs root (chroot(2)).
fn chroot(root: &Path, cmd: &[&str]) -> String {
    let out = Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(cmd)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn busybox_image_runs_its_shell_and_applets() {
    let img = small("busybox");
    let root = unpack(&img);
    let os = fs::read_to_string(root.path().join("etc/os-release")).unwrap();
    assert!(
        os.contains("NAME=\"berth-test-busybox\"\nID=berth-test-busybox\n"),
        "{os}"
    );
    let tmp = fs::symlink_metadata(root.path().join("tmp")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&tmp.permissions()) & 0o7777,
        0o1777
    );
    for d in ["proc", "sys", "dev"] {
        assert!(root.path().join(d).is_dir(), "{d}");
    }
    if !is_root() {
        eprintln!("skipping chroot checks: needs root");
        return;
    }
    let out = chroot(
        root.path(),
        &[
            "/bin/sh",
            "-c",
            "echo hi; id -u; ls /bin/busybox; [ -d /tmp ] && echo tmp",
        ],
    );
    assert_eq!(out, "hi\n0\n/bin/busybox\ntmp\n");
}

#[test]
fn tools_image_runs_host_binaries_from_their_closure() {
    let img = small("tools");
    assert_eq!(
        img.layers[0],
        small("busybox").layers[0],
        "tools shares the busybox layer"
    );
    let root = unpack(&img);
    let os = fs::read_to_string(root.path().join("etc/os-release")).unwrap();
    assert!(os.contains("ID=berth-test-tools\n"), "{os}");
    if !is_root() {
        eprintln!("skipping chroot checks: needs root");
        return;
    }
    // Real host binaries (not busybox applets), each resolving its libraries inside the image.
    let out = chroot(root.path(), &["/usr/bin/bash", "-c", "echo $BASH_VERSION >/dev/null && /bin/ls -d /usr && /usr/bin/id -un && /usr/bin/env true && /usr/bin/stat -c %a /tmp && /usr/bin/getent passwd nobody"]);
    assert_eq!(
        out,
        "/usr\nroot\n1777\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    );
    assert!(chroot(root.path(), &["/bin/ls", "--version"]).contains("GNU coreutils"));
    assert_eq!(
        chroot(root.path(), &["/bin/sh", "-c", "echo busybox shell"]),
        "busybox shell\n"
    );
}

#[test]
fn layered_expected_tree_matches_blobs() {
    let img = small("layered");
    let path = img.layout_dir.parent().unwrap().join(EXPECTED_TREE);
    let tree: Vec<TreeEntry> = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        tree,
        flatten_image(&img.layout_dir, &img.manifest_digest).unwrap()
    );
    assert_eq!(img.layers.len(), 4);
    let get = |p: &str| tree.iter().find(|e| e.path == p);
    assert_eq!(get("/data/victim").map(|e| e.kind.as_str()), Some("dir"));
    assert!(get("/data/opaque/old-1").is_none());
    assert!(get("/etc/os-release").is_some_and(|e| e.kind == "file"));
    let mut paths: Vec<&str> = tree.iter().map(|e| e.path.as_str()).collect();
    let listed = paths.clone();
    paths.sort_by_key(|p| p.split('/').collect::<Vec<_>>());
    assert_eq!(listed, paths, "expected tree is sorted by path components");
}

#[test]
fn index_resolves_host_platform_to_the_busybox_manifest() {
    let img = small("busybox-index");
    let busybox = small("busybox");
    let top = resolve_tag(&img.layout_dir, "latest").unwrap();
    assert_eq!(
        (top.media_type.as_str(), &top.digest),
        (MEDIA_INDEX, &img.manifest_digest)
    );
    let index: Index = read_json_blob(&img.layout_dir, &img.manifest_digest).unwrap();
    let archs: Vec<&str> = index
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().architecture.as_str())
        .collect();
    assert_eq!(archs, [host_arch(), other_arch()]);
    assert_eq!(index.manifests[0].digest, busybox.manifest_digest);
    assert_ne!(index.manifests[1].digest, busybox.manifest_digest);
    assert_eq!(img.platforms.len(), 2);
    assert_eq!(img.config_digest, busybox.config_digest);
    // skopeo sees the index raw and resolves each platform to its own config.
    let layout_ref = format!("oci:{}:latest", img.layout_dir.display());
    let raw = skopeo_json(&["inspect", "--raw", &layout_ref]);
    assert_eq!(raw["mediaType"], MEDIA_INDEX);
    let host = skopeo_json(&["inspect", "--config", &layout_ref]);
    assert_eq!(host["architecture"], host_arch());
    let other = skopeo_json(&[
        "--override-arch",
        other_arch(),
        "inspect",
        "--config",
        &layout_ref,
    ]);
    assert_eq!(other["architecture"], other_arch());
    assert_eq!(
        other["config"]["Labels"]["berth.test.platform"],
        format!("linux/{}", other_arch())
    );
}

#[test]
fn hostbins_rejects_missing_binaries_clearly() {
    let err = hostbins("nope", &["/usr/bin/berth-no-such-binary"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("/usr/bin/berth-no-such-binary"), "{err}");
    assert!(build_one(&unit_out_dir(), "bogus")
        .unwrap_err()
        .to_string()
        .contains("unknown test image"));
}

/// The whole catalog, large image included: the first run builds (into the
/// default cache dir, so later runs and the e2e tests reuse it), the second
/// must come entirely from the caches and describe the same images.
#[test]
fn build_all_builds_everything_then_reuses_it() {
    let out = unit_out_dir().join("all");
    let cache = Path::new(DEFAULT_CACHE_DIR);
    let first = build_all(&out, cache).unwrap();
    // Reuse is proven by the files, not by a clock: a cached image is not
    // rewritten, so every output keeps its modification time.
    let mtimes = |images: Vec<&crate::image::BuiltImage>| -> Vec<std::time::SystemTime> {
        images
            .iter()
            .flat_map(|i| {
                [
                    i.layout_dir.join("index.json"),
                    i.docker_archive.clone(),
                    i.oci_archive.clone(),
                ]
            })
            .map(|p| fs::metadata(&p).and_then(|m| m.modified()).unwrap())
            .collect()
    };
    let before = mtimes(first.images());
    let second = build_all(&out, cache).unwrap();
    assert_eq!(first.images(), second.images());
    assert_eq!(
        before,
        mtimes(second.images()),
        "the second build_all reused every image"
    );
    let large = &first.large;
    assert_eq!(large.layout_dir, out.join("large/layout"));
    let target = fs::read_link(out.join("large")).unwrap();
    assert!(
        target.starts_with(cache) && target.to_string_lossy().contains("/large-"),
        "{target:?}"
    );
    assert!(large.layers.len() >= 4);
    assert!(
        large
            .layers
            .iter()
            .map(|l| l.uncompressed_size)
            .sum::<u64>()
            >= 300_000_000
    );
    assert_eq!(large.layers[0], first.busybox.layers[0]);
    assert!(first.layered_expected_tree.is_file());
    for img in first.images() {
        assert!(
            img.docker_archive.is_file() && img.oci_archive.is_file(),
            "{}",
            img.name
        );
    }
}
