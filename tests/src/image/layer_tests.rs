use super::*;
use crate::image::digest::sha256_bytes;
use crate::image::FIXED_MTIME;
use std::io::Read;

fn sample() -> Layer {
    let mut big = vec![0u8; 300_000];
    for (i, b) in big.iter_mut().enumerate() {
        *b = (i * 7 % 251) as u8;
    }
    Layer::new()
        .with(Entry::file("/z/file", "zz", 0o644))
        .with(Entry::hardlink("/a/link-to-z", "/z/file"))
        .with(Entry::file("/a-b", "dash sorts before slash", 0o644))
        .with(Entry::dir("/tmp", 0o1777))
        .with(Entry::symlink("/a/rel", "../z/file"))
        .with(Entry::whiteout("/gone"))
        .with(Entry::opaque("/opq"))
        .with(
            Entry::file("/owned", big, 0o750)
                .owner(1000, 100)
                .xattr("user.berth", b"v"),
        )
        .with(Entry::file(
            &format!("/long/{}", "n".repeat(150)),
            "long",
            0o644,
        ))
}

/// (name, type, mode, uid, gid, mtime, link target) of a tar record.
type Record = (String, EntryType, u32, u64, u64, u64, Option<String>);

/// Every tar record, in archive order.
fn records(tar: &[u8]) -> Vec<Record> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let link = e
                .link_name()
                .unwrap()
                .map(|l| l.to_string_lossy().into_owned());
            let name = e.path().unwrap().to_string_lossy().into_owned();
            (
                name,
                h.entry_type(),
                h.mode().unwrap(),
                h.uid().unwrap(),
                h.gid().unwrap(),
                h.mtime().unwrap(),
                link,
            )
        })
        .collect()
}

#[test]
fn same_input_same_digests_and_blob_matches() {
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = sample().write_blob(d1.path()).unwrap();
    let b = sample().write_blob(d2.path()).unwrap();
    assert_eq!(a, b);
    let blob = std::fs::read(d1.path().join(hex_part(&a.digest))).unwrap();
    assert_eq!(
        (sha256_bytes(&blob), blob.len() as u64),
        (a.digest.clone(), a.size)
    );
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&blob[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(
        (sha256_bytes(&plain), plain.len() as u64),
        (a.diff_id.clone(), a.uncompressed_size)
    );
    assert_eq!(plain, sample().write_tar(Vec::new()).unwrap());
    // The gzip level changes the blob but never the diff_id.
    let mut fast = sample();
    fast.gzip_level = 1;
    let c = fast.write_blob(d2.path()).unwrap();
    assert_eq!(c.diff_id, a.diff_id);
    assert_ne!(c.digest, a.digest);
}

#[test]
fn entries_sorted_with_fixed_metadata_and_exact_whiteout_names() {
    let tar = sample().write_tar(Vec::new()).unwrap();
    let recs = records(&tar);
    let names: Vec<&str> = recs.iter().map(|r| r.0.trim_end_matches('/')).collect();
    let long = format!("long/{}", "n".repeat(150));
    let expected = [
        ".wh.gone",
        "a",
        "a/rel",
        "a-b",
        "long",
        &long,
        "opq",
        "opq/.wh..wh..opq",
        "owned",
        "tmp",
        "z",
        "z/file",
        "a/link-to-z",
    ];
    assert_eq!(names, expected);
    assert!(recs.iter().all(|r| r.5 == FIXED_MTIME));
    let by: BTreeMap<&str, _> = recs
        .iter()
        .map(|r| (r.0.trim_end_matches('/'), r))
        .collect();
    assert_eq!(by["tmp"].2, 0o1777);
    assert_eq!(
        (by["owned"].2, by["owned"].3, by["owned"].4),
        (0o750, 1000, 100)
    );
    assert_eq!(by["a"].1, EntryType::Directory); // implied parent
    assert_eq!((by["a"].2, by["a"].3), (0o755, 0));
    assert_eq!(by["a/rel"].6.as_deref(), Some("../z/file"));
    assert_eq!(
        (by["a/link-to-z"].1, by["a/link-to-z"].6.as_deref()),
        (EntryType::Link, Some("z/file"))
    );
    assert_eq!(by[".wh.gone"].1, EntryType::Regular);
    // The xattr travels as a PAX record on the owned file.
    let mut a = tar::Archive::new(&tar[..]);
    let owned = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().ends_with("owned"))
        .map(|mut e| {
            let pax: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|x| x.unwrap())
                .map(|x| (x.key().unwrap().to_string(), x.value_bytes().to_vec()))
                .collect();
            pax
        });
    assert_eq!(
        owned.unwrap(),
        [("SCHILY.xattr.user.berth".to_string(), b"v".to_vec())]
    );
}

#[test]
fn rejects_inconsistent_layers() {
    let err = |l: Layer| l.write_tar(Vec::new()).unwrap_err().to_string();
    assert!(err(Layer::new()
        .with(Entry::file("/x", "1", 0o644))
        .with(Entry::dir("/x", 0o755)))
    .contains("twice"));
    assert!(err(Layer::new().with(Entry::hardlink("/l", "/nope"))).contains("same layer"));
    assert!(err(Layer::new()
        .with(Entry::file("/f", "", 0o644))
        .with(Entry::file("/f/g", "", 0o644)))
    .contains("not a directory"));
    assert!(err(Layer::new().with(Entry::file("/a/../b", "", 0o644))).contains("not allowed"));
    assert!(err(Layer::new().with(Entry::file("rel", "", 0o644))).contains("absolute"));
    assert!(err(Layer::new().with(Entry::file("/.wh.x", "", 0o644))).contains("reserved"));
}

#[test]
fn host_files_are_streamed_and_checked() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("host");
    std::fs::write(&p, b"host bytes").unwrap();
    let tar = Layer::new()
        .with(Entry::host_file("/h", &p, 0o755))
        .write_tar(Vec::new())
        .unwrap();
    let mut a = tar::Archive::new(&tar[..]);
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    let mut s = String::new();
    e.read_to_string(&mut s).unwrap();
    assert_eq!(s, "host bytes");
    let missing = Layer::new().with(Entry::host_file("/h", d.path().join("nope"), 0o755));
    assert!(missing
        .write_tar(Vec::new())
        .unwrap_err()
        .to_string()
        .contains("cannot open host file"));
}
