use super::*;
use crate::image::layer::{Entry, Layer};

fn flatten(layers: &[Layer]) -> BTreeMap<String, TreeEntry> {
    let mut f = Flattener::new();
    for (i, l) in layers.iter().enumerate() {
        let tar = l.write_tar(Vec::new()).unwrap();
        f.apply_tar(i, &tar[..]).unwrap();
    }
    f.tree().into_iter().map(|e| (e.path.clone(), e)).collect()
}

fn base() -> Layer {
    Layer::new()
        .with(Entry::file("/d/lower", "lower", 0o644))
        .with(Entry::file("/d/sub/deep", "deep", 0o644))
        .with(Entry::file("/keep", "keep", 0o600).owner(5, 6))
        .with(Entry::file("/f2s", "file", 0o644))
        .with(Entry::symlink("/s2d", "keep"))
        .with(Entry::dir("/meta", 0o700))
        .with(Entry::file("/meta/child", "c", 0o644))
}

#[test]
fn whiteout_removes_lower_file_and_subtree() {
    let t = flatten(&[
        base(),
        Layer::new()
            .with(Entry::whiteout("/d/lower"))
            .with(Entry::whiteout("/d/sub")),
    ]);
    assert!(!t.contains_key("/d/lower"));
    assert!(!t.contains_key("/d/sub") && !t.contains_key("/d/sub/deep"));
    assert_eq!(t["/d"].kind, "dir");
    let keep = &t["/keep"];
    assert_eq!(
        (keep.mode, keep.uid, keep.gid, keep.size),
        (0o600, 5, 6, Some(4))
    );
    assert_eq!(
        keep.sha256.as_deref(),
        Some(hex_part(&crate::image::digest::sha256_bytes(b"keep")))
    );
}

#[test]
fn opaque_hides_lower_content_but_keeps_same_layer_files() {
    let upper = Layer::new()
        .with(Entry::opaque("/d"))
        .with(Entry::file("/d/new", "new", 0o644));
    let t = flatten(&[base(), upper]);
    let under_d: Vec<&str> = t
        .keys()
        .filter(|k| k.starts_with("/d/"))
        .map(String::as_str)
        .collect();
    assert_eq!(under_d, ["/d/new"]);
    // The markers themselves never show up.
    assert!(t.keys().all(|k| !k.contains(".wh.")));
}

#[test]
fn replacement_semantics() {
    let upper = Layer::new()
        .with(Entry::symlink("/f2s", "/keep"))
        .with(Entry::dir("/s2d", 0o711))
        .with(Entry::dir("/meta", 0o755).owner(7, 7))
        .with(Entry::dir("/keep", 0o755));
    let t = flatten(&[base(), upper]);
    assert_eq!(
        (t["/f2s"].kind.as_str(), t["/f2s"].target.as_deref()),
        ("symlink", Some("/keep"))
    );
    assert_eq!((t["/s2d"].kind.as_str(), t["/s2d"].mode), ("dir", 0o711));
    // A directory over a directory updates metadata and keeps children.
    assert_eq!((t["/meta"].mode, t["/meta"].uid), (0o755, 7));
    assert!(t.contains_key("/meta/child"));
    assert_eq!(t["/keep"].kind, "dir");
}

#[test]
fn whited_out_name_can_be_recreated_as_dir() {
    let l2 = Layer::new().with(Entry::whiteout("/d/lower"));
    let l3 = Layer::new()
        .with(Entry::dir("/d/lower", 0o750))
        .with(Entry::file("/d/lower/x", "x", 0o644));
    let t = flatten(&[base(), l2, l3]);
    assert_eq!(
        (t["/d/lower"].kind.as_str(), t["/d/lower"].mode),
        ("dir", 0o750)
    );
    assert_eq!(t["/d/lower/x"].size, Some(1));
}

#[test]
fn hardlinks_share_content_and_group() {
    let l = Layer::new()
        .with(Entry::file("/h/a", "same", 0o640).owner(3, 4))
        .with(Entry::hardlink("/h/b", "/h/a"))
        .with(Entry::hardlink("/h/0", "/h/a"))
        .with(Entry::file("/h/z", "other", 0o644))
        .with(Entry::hardlink("/h/y", "/h/z"));
    let t = flatten(std::slice::from_ref(&l));
    assert_eq!(t["/h/a"].hardlink_group, Some(1));
    assert_eq!(t["/h/b"].hardlink_group, Some(1));
    assert_eq!(t["/h/0"].hardlink_group, Some(1));
    assert_eq!(t["/h/y"].hardlink_group, Some(2));
    assert_eq!(
        (t["/h/b"].mode, t["/h/b"].uid, &t["/h/b"].sha256),
        (0o640, 3, &t["/h/a"].sha256)
    );
    // Removing one side of a pair leaves a plain file.
    let t = flatten(&[l, Layer::new().with(Entry::whiteout("/h/y"))]);
    assert_eq!(t["/h/z"].hardlink_group, None);
}

#[test]
fn rejects_paths_under_a_file_and_dangling_hardlinks() {
    let mut f = Flattener::new();
    f.apply_tar(0, &base().write_tar(Vec::new()).unwrap()[..])
        .unwrap();
    // Hand-made tar: the Layer model would refuse to produce these.
    let header = |kind| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h
    };
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Regular);
    b.append_data(&mut h, "keep/x", io::empty()).unwrap();
    let err = f
        .apply_tar(1, &b.into_inner().unwrap()[..])
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-directory parent /keep"), "{err}");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(EntryType::Link);
    b.append_link(&mut h, "ln", "missing").unwrap();
    let err = f
        .apply_tar(2, &b.into_inner().unwrap()[..])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer 2") && err.contains("not a file"),
        "{err}"
    );
}
