//! The adversarial multi-layer image: whiteouts, opaque directories, type
//! replacements, hardlinks, odd modes and owners, long and spaced names. Its
//! expected flattened tree is computed by [`super::flatten`] from the written
//! blobs, so unpackers can be checked against it.

use super::busybox::{base_layer, os_release};
use super::layer::{Entry, Layer};
use super::oci::ImageSpec;
use super::ImageError;

/// A path longer than the 100 bytes of a ustar name field.
pub fn long_path() -> String {
    format!("/data/long/{}/end", "d".repeat(120))
}

/// Layer 2: the lower content that later layers delete, hide and replace,
/// and an os-release naming the image (replacing busybox's).
fn lower() -> Layer {
    Layer::new()
        .with(Entry::file(
            "/etc/os-release",
            os_release("berth-test-layered"),
            0o644,
        ))
        .with(Entry::dir("/data", 0o755))
        .with(Entry::file("/data/file-a", "alpha\n", 0o644))
        .with(Entry::file("/data/hl-1", "hardlinked content\n", 0o644))
        .with(Entry::hardlink("/data/hl-2", "/data/hl-1"))
        .with(Entry::symlink("/data/rel-link", "file-a"))
        .with(Entry::symlink("/data/abs-link", "/data/file-a"))
        .with(Entry::file("/data/victim", "delete me\n", 0o644))
        .with(Entry::dir("/data/opaque", 0o755))
        .with(Entry::file(
            "/data/opaque/old-1",
            "hidden by opaque\n",
            0o644,
        ))
        .with(Entry::file("/data/opaque/sub/old-2", "hidden too\n", 0o644))
        .with(Entry::file(
            "/data/to-symlink",
            "becomes a symlink\n",
            0o644,
        ))
        .with(Entry::symlink("/data/link-to-dir", "file-a"))
        .with(Entry::file("/data/name with spaces", "spaces\n", 0o644))
        .with(Entry::file("/data/empty", "", 0o600))
        .with(Entry::file(&long_path(), "long name\n", 0o644))
}

/// Layer 3: whiteout, opaque dir plus a new file in it, file -> symlink,
/// symlink -> dir, a same-layer hardlink, mode 0750 and uid 1000.
fn changes() -> Layer {
    Layer::new()
        .with(Entry::whiteout("/data/victim"))
        .with(Entry::opaque("/data/opaque"))
        .with(Entry::file(
            "/data/opaque/new",
            "added with the opaque marker\n",
            0o644,
        ))
        .with(Entry::symlink("/data/to-symlink", "file-a"))
        .with(Entry::dir("/data/link-to-dir", 0o755))
        .with(Entry::file(
            "/data/link-to-dir/inside",
            "was a symlink\n",
            0o644,
        ))
        .with(Entry::file("/data/l3-file", "layer three\n", 0o644))
        .with(Entry::hardlink("/data/l3-hardlink", "/data/l3-file"))
        .with(Entry::file(
            "/data/mode-0750",
            "#!/bin/sh\necho 0750\n",
            0o750,
        ))
        .with(Entry::file("/data/owned-1000", "owned by 1000\n", 0o644).owner(1000, 1000))
}

/// Layer 4: the whited-out name comes back as a directory.
fn recreate() -> Layer {
    Layer::new()
        .with(Entry::dir("/data/victim", 0o750))
        .with(Entry::file(
            "/data/victim/reborn",
            "back as a directory\n",
            0o644,
        ))
}

/// The `layered` image: busybox plus three change layers.
pub fn spec() -> Result<ImageSpec, ImageError> {
    let mut spec = ImageSpec::new("layered", "latest");
    spec.layers = vec![base_layer()?, lower(), changes(), recreate()];
    spec.cmd = Some(vec!["/bin/sh".into()]);
    spec.working_dir = Some("/data".into());
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::flatten::Flattener;
    use std::collections::BTreeMap;

    #[test]
    fn flattened_tree_has_every_case() {
        let mut f = Flattener::new();
        for (i, l) in [lower(), changes(), recreate()].iter().enumerate() {
            f.apply_tar(i, &l.write_tar(Vec::new()).unwrap()[..])
                .unwrap();
        }
        let t: BTreeMap<String, _> = f.tree().into_iter().map(|e| (e.path.clone(), e)).collect();
        let kind = |p: &str| t.get(p).map(|e| e.kind.as_str()).unwrap_or("absent");
        assert_eq!(kind("/data/victim"), "dir");
        assert_eq!(kind("/data/victim/reborn"), "file");
        let opaque: Vec<&String> = t
            .keys()
            .filter(|k| k.starts_with("/data/opaque/"))
            .collect();
        assert_eq!(opaque, ["/data/opaque/new"]);
        assert_eq!(kind("/data/to-symlink"), "symlink");
        assert_eq!(kind("/data/link-to-dir"), "dir");
        assert_eq!(
            t["/data/hl-1"].hardlink_group,
            t["/data/hl-2"].hardlink_group
        );
        assert_eq!(
            t["/data/l3-file"].hardlink_group,
            t["/data/l3-hardlink"].hardlink_group
        );
        assert_ne!(
            t["/data/hl-1"].hardlink_group,
            t["/data/l3-file"].hardlink_group
        );
        assert!(t["/data/hl-1"].hardlink_group.is_some());
        assert_eq!(t["/data/mode-0750"].mode, 0o750);
        assert_eq!(
            (t["/data/owned-1000"].uid, t["/data/owned-1000"].gid),
            (1000, 1000)
        );
        assert_eq!(t[&long_path()].size, Some(10));
        assert_eq!(t["/data/abs-link"].target.as_deref(), Some("/data/file-a"));
    }
}
