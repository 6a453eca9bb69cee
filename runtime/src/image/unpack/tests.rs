//! Hostile and adversarial layers: every unsafe entry is refused with the
//! layer and entry named, and nothing appears outside the staging directory.

use super::*;
use std::os::unix::fs::MetadataExt;

/// A tar entry written with raw header bytes, so hostile names survive.
fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn tar_of(entries: &[(&str, EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (n, k, l, d) in entries {
        entry(&mut b, n, *k, l, d);
    }
    b.into_inner().unwrap()
}

/// A staging dir and a sibling "host" dir that must stay empty.
struct Scene {
    _dir: tempfile::TempDir,
    staging: std::path::PathBuf,
    host: std::path::PathBuf,
}

fn scene() -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let (staging, host) = (dir.path().join("staging"), dir.path().join("host"));
    std::fs::create_dir(&staging).unwrap();
    std::fs::create_dir(&host).unwrap();
    Scene {
        _dir: dir,
        staging,
        host,
    }
}

fn refused(layers: &[Vec<u8>], rootless: bool) -> (String, Scene) {
    let s = scene();
    let mut a = Applier::new(&s.staging, rootless).unwrap();
    let mut err = None;
    for (i, l) in layers.iter().enumerate() {
        if let Err(e) = a.apply(&format!("sha256:layer{i}"), &l[..]) {
            err = Some(e.to_string());
            break;
        }
    }
    assert_eq!(
        std::fs::read_dir(&s.host).unwrap().count(),
        0,
        "something was written outside staging"
    );
    (err.expect("the layer must be refused"), s)
}

#[test]
fn absolute_and_dotdot_paths_are_refused() {
    use EntryType::*;
    let (e, _) = refused(&[tar_of(&[("/abs", Regular, "", b"x")])], false);
    assert!(
        e.contains("sha256:layer0") && e.contains("\"/abs\"") && e.contains("absolute"),
        "{e}"
    );
    let (e, _) = refused(
        &[tar_of(&[("a/../../host/evil", Regular, "", b"x")])],
        false,
    );
    assert!(e.contains("`..`"), "{e}");
}

#[test]
fn writes_through_symlinks_are_refused() {
    use EntryType::*;
    let s = scene();
    let host = s.host.to_str().unwrap().to_string();
    let rel = "../host";
    for target in [host.as_str(), rel] {
        let l = tar_of(&[
            ("link", Symlink, target, b""),
            ("link/evil", Regular, "", b"x"),
        ]);
        let (e, _) = refused(&[l], false);
        assert!(e.contains("link/evil") && e.contains("symlink"), "{e}");
    }
    // The symlink in a lower layer, the write in a later one.
    let (e, _) = refused(
        &[
            tar_of(&[("d", Symlink, &host, b"")]),
            tar_of(&[("d/x/y", Directory, "", b"")]),
        ],
        false,
    );
    assert!(e.contains("sha256:layer1") && e.contains("symlink"), "{e}");
    // Whiteouts through a symlink must not delete host files either.
    std::fs::write(s.host.join("keep"), "x").unwrap();
    let mut a = Applier::new(&s.staging, false).unwrap();
    a.apply("l0", &tar_of(&[("d", Symlink, &host, b"")])[..])
        .unwrap();
    assert!(a
        .apply("l1", &tar_of(&[("d/.wh.keep", Regular, "", b"")])[..])
        .is_err());
    assert!(a
        .apply("l2", &tar_of(&[("d/.wh..wh..opq", Regular, "", b"")])[..])
        .is_err());
    assert!(s.host.join("keep").exists());
}

#[test]
fn a_symlinked_root_is_refused() {
    use EntryType::*;
    for name in [".", "./", "/"] {
        let (e, _) = refused(
            &[tar_of(&[
                (name, Symlink, "/", b""),
                ("evil", Regular, "", b"x"),
            ])],
            false,
        );
        assert!(e.contains("root") || e.contains("absolute"), "{name}: {e}");
    }
}

#[test]
fn hardlinks_must_stay_inside() {
    use EntryType::*;
    let (e, _) = refused(&[tar_of(&[("hl", Link, "../host/x", b"")])], false);
    assert!(e.contains("hardlink target leaves"), "{e}");
    let s = scene();
    let host = s.host.to_str().unwrap().to_string();
    std::fs::write(s.host.join("secret"), "x").unwrap();
    let mut a = Applier::new(&s.staging, false).unwrap();
    a.apply("l0", &tar_of(&[("d", Symlink, &host, b"")])[..])
        .unwrap();
    let e = a
        .apply("l1", &tar_of(&[("hl", Link, "d/secret", b"")])[..])
        .unwrap_err()
        .to_string();
    assert!(e.contains("symlink"), "{e}");
    assert_eq!(std::fs::metadata(s.host.join("secret")).unwrap().nlink(), 1);
}

#[test]
fn device_nodes_are_refused_when_rootless_and_setuid_is_dropped() {
    use EntryType::*;
    let (e, _) = refused(&[tar_of(&[("dev/null", Char, "", b"")])], true);
    assert!(e.contains("device node"), "{e}");
    let s = scene();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("suid").unwrap();
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let mut a = Applier::new(&s.staging, true).unwrap();
    a.apply("l0", &b.into_inner().unwrap()[..]).unwrap();
    assert_eq!(
        std::fs::metadata(s.staging.join("suid")).unwrap().mode() & 0o7777,
        0o755
    );
}

#[test]
fn malformed_whiteouts_are_refused() {
    use EntryType::*;
    for name in [".wh..", ".wh.", "a/.wh...", ".wh..wh.x"] {
        let (e, _) = refused(&[tar_of(&[(name, Regular, "", b"")])], false);
        assert!(e.contains("whiteout") || e.contains("`..`"), "{name}: {e}");
    }
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_layers_only() {
    use EntryType::*;
    let s = scene();
    let mut a = Applier::new(&s.staging, false).unwrap();
    a.apply(
        "l0",
        &tar_of(&[
            ("d/", Directory, "", b""),
            ("d/old", Regular, "", b"1"),
            ("d/sub/x", Regular, "", b"2"),
            ("gone", Regular, "", b"3"),
            ("f", Regular, "", b"4"),
        ])[..],
    )
    .unwrap();
    // New entries before the markers: the markers must not remove them.
    a.apply(
        "l1",
        &tar_of(&[
            ("d/sub/", Directory, "", b""),
            ("d/new", Regular, "", b"5"),
            ("d/.wh..wh..opq", Regular, "", b""),
            ("back", Regular, "", b"6"),
            (".wh.back", Regular, "", b""),
            (".wh.gone", Regular, "", b""),
            ("hl", Link, "f", b""),
        ])[..],
    )
    .unwrap();
    let exists = |p: &str| s.staging.join(p).symlink_metadata().is_ok();
    assert!(!exists("d/old") && !exists("d/sub/x") && !exists("gone"));
    assert!(exists("d/new") && exists("d/sub") && exists("back"));
    assert_eq!(
        std::fs::metadata(s.staging.join("hl")).unwrap().ino(),
        std::fs::metadata(s.staging.join("f")).unwrap().ino()
    );
}

#[test]
fn rootless_unpack_records_owners_for_mksquashfs() {
    let owned = |name: &str, kind: EntryType, mode: u32, uid: u64| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid + 1);
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
        b.into_inner().unwrap()
    };
    let s = scene();
    let mut a = Applier::new(&s.staging, true).unwrap();
    let layers = [
        owned("etc", EntryType::Directory, 0o755, 0),
        owned("etc/shadow", EntryType::Regular, 0o4640, 0),
        owned("home/u/gone", EntryType::Regular, 0o600, 1000),
        owned("home/u/.wh.gone", EntryType::Regular, 0o600, 0),
        owned("etc/with space", EntryType::Regular, 0o644, 0),
    ];
    for (i, l) in layers.iter().enumerate() {
        a.apply(&format!("sha256:l{i}"), &l[..]).unwrap();
    }
    let pf = s.host.join("pf");
    assert!(a.write_pseudo_file(&s.staging, &pf).unwrap());
    // setuid dropped, the whited-out file and the unparseable name left out.
    assert_eq!(
        std::fs::read_to_string(&pf).unwrap(),
        "etc m 755 0 1\netc/shadow m 640 0 1\n"
    );
    std::fs::remove_file(&pf).unwrap();
    // As root the tree's own ownership is right: no pseudo file.
    let root_applier = Applier::new(&s.staging, false).unwrap();
    assert!(!root_applier.write_pseudo_file(&s.staging, &pf).unwrap());
}
