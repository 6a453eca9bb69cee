//! The busybox base: Debian's static busybox, applet symlinks, and the few
//! `/etc` files and directories a container expects. Every other test image
//! starts from this layer, so its blob is shared between them.

use std::path::PathBuf;

use super::hostfs::HostTree;
use super::layer::{Entry, Layer};
use super::oci::ImageSpec;
use super::ImageError;

/// Where Debian's busybox-static installs the binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// Applets linked next to the busybox binary (all present in Debian 12's
/// busybox-static; a unit test checks that against `busybox --list`).
pub const APPLETS: &[&str] = &[
    "[",
    "ash",
    "awk",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cmp",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "diff",
    "dirname",
    "du",
    "echo",
    "egrep",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "groups",
    "gunzip",
    "gzip",
    "head",
    "hexdump",
    "hostname",
    "id",
    "kill",
    "less",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mktemp",
    "more",
    "mount",
    "mv",
    "nc",
    "nl",
    "nproc",
    "nsenter",
    "od",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "setpriv",
    "sh",
    "sha1sum",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "stty",
    "sync",
    "tail",
    "tar",
    "taskset",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "tty",
    "umount",
    "uname",
    "uniq",
    "unshare",
    "uptime",
    "vi",
    "wc",
    "which",
    "whoami",
    "xargs",
    "xxd",
    "yes",
    "zcat",
];

/// `/etc/os-release` naming the image, so tests can tell which rootfs they are in.
pub fn os_release(id: &str) -> String {
    format!("NAME=\"{id}\"\nID={id}\nPRETTY_NAME=\"berth test image {id}\"\nVERSION_ID=\"1\"\n")
}

/// The busybox binary (with every host symlink on its path) and its applets.
/// Fails with a hint when busybox-static is not installed.
pub fn busybox_tree() -> Result<HostTree, ImageError> {
    let mut tree = HostTree::new();
    let real = tree.add(HOST_BUSYBOX).map_err(|e| ImageError::Io {
        action: "cannot find busybox (apt-get install busybox-static)",
        path: PathBuf::from(HOST_BUSYBOX),
        source: std::io::Error::other(e.to_string()),
    })?;
    check_static(&tree.host_path(&real))?;
    let dir = real.rsplit_once('/').map_or("", |(d, _)| d);
    for applet in APPLETS {
        tree.add_symlink(&format!("{dir}/{applet}"), "busybox")?;
    }
    Ok(tree)
}

/// A dynamically linked busybox would need its libraries too; Debian's
/// `busybox` (not `-static`) package is the usual cause.
fn check_static(path: &std::path::Path) -> Result<(), ImageError> {
    let bytes = std::fs::read(path).map_err(ImageError::io("cannot read", path))?;
    let elf = goblin::elf::Elf::parse(&bytes).map_err(|e| ImageError::Elf {
        path: path.to_path_buf(),
        reason: format!("not an elf file: {e}"),
    })?;
    if elf.interpreter.is_some() || !elf.libraries.is_empty() {
        return Err(ImageError::Elf {
            path: path.to_path_buf(),
            reason: "busybox is dynamically linked; install busybox-static instead of busybox"
                .into(),
        });
    }
    Ok(())
}

/// The base layer shared by every test image (one blob everywhere):
/// busybox, `/etc` basics naming `berth-test-busybox`, and the standard
/// empty directories. Images that name themselves override `/etc/os-release`
/// in a later layer.
pub fn base_layer() -> Result<Layer, ImageError> {
    let mut layer = busybox_tree()?.to_layer();
    for e in etc_entries("berth-test-busybox") {
        layer.push(e);
    }
    for (dir, mode) in [
        ("/tmp", 0o1777),
        ("/proc", 0o555),
        ("/sys", 0o555),
        ("/dev", 0o755),
        ("/root", 0o700),
        ("/home", 0o755),
    ] {
        layer.push(Entry::dir(dir, mode));
    }
    Ok(layer)
}

/// `/etc` files: os-release, passwd/group with root and nobody, nsswitch.conf
/// (so glibc tools such as getent read the files), and an empty hosts file.
pub fn etc_entries(os_id: &str) -> Vec<Entry> {
    vec![
        Entry::dir("/etc", 0o755),
        Entry::file("/etc/os-release", os_release(os_id), 0o644),
        Entry::file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            0o644,
        ),
        Entry::file("/etc/group", "root:x:0:\nnobody:x:65534:\n", 0o644),
        Entry::file(
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
            0o644,
        ),
        Entry::file("/etc/hosts", "127.0.0.1 localhost\n", 0o644),
    ]
}

/// The `busybox` image: one layer, `Cmd ["/bin/sh"]`.
pub fn spec() -> Result<ImageSpec, ImageError> {
    let mut spec = ImageSpec::new("busybox", "latest");
    spec.layers.push(base_layer()?);
    spec.cmd = Some(vec!["/bin/sh".into()]);
    spec.labels.insert(
        "org.opencontainers.image.title".into(),
        "berth-test-busybox".into(),
    );
    Ok(spec)
}

/// Host files the busybox layer reads (for cache stamps).
pub fn host_inputs() -> Result<Vec<PathBuf>, ImageError> {
    Ok(busybox_tree()?.host_files())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::hostfs::HostNode;

    #[test]
    fn applets_exist_in_host_busybox() {
        let out = std::process::Command::new(HOST_BUSYBOX)
            .arg("--list")
            .output()
            .expect("run busybox --list");
        let list = String::from_utf8(out.stdout).unwrap();
        let have: Vec<&str> = list.lines().collect();
        let missing: Vec<&&str> = APPLETS.iter().filter(|a| !have.contains(a)).collect();
        assert!(
            missing.is_empty(),
            "applets missing from busybox: {missing:?}"
        );
    }

    #[test]
    fn tree_has_binary_and_applet_links() {
        let tree = busybox_tree().unwrap();
        let real = std::fs::canonicalize(HOST_BUSYBOX).unwrap();
        let real = real.to_str().unwrap();
        assert!(matches!(tree.nodes()[real], HostNode::File(_, 0o755)));
        let dir = real.rsplit_once('/').unwrap().0;
        assert_eq!(
            tree.nodes()[&format!("{dir}/sh")],
            HostNode::Symlink("busybox".into())
        );
        assert_eq!(
            tree.nodes()[&format!("{dir}/[")],
            HostNode::Symlink("busybox".into())
        );
        assert!(os_release("x").contains("ID=x\n"));
    }
}
