//! Root filesystem: mounts and their flags, devices, masked and read-only
//! paths, read-only root, symlink containment.

mod common;
use common::*;
use serde_json::json;

fn mountinfo_line<'a>(out: &'a str, dst: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(4) == Some(dst))
        .unwrap_or_else(|| panic!("{dst} not mounted:\n{out}"))
}

#[test]
fn bind_tmpfs_and_flags() {
    let mut b = Bundle::new("mounts", &[]);
    let host = b.dir.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from-host").unwrap();
    std::fs::write(b.dir.join("single"), "single-file").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": host, "options": ["rbind", "ro", "nosuid", "nodev"]}));
    mounts.push(json!({"destination": "/etc/single", "type": "none", "source": "single", "options": ["bind", "ro"]}));
    mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "size=1m", "mode=1777"]}));
    mounts.push(json!({"destination": "/deep/new/dir", "type": "tmpfs", "source": "tmpfs", "options": ["private"]}));
    let out = b.sh("cat /proc/self/mountinfo; cat /data/f; echo; cat /etc/single; echo; touch /data/x 2>&1 || echo ro-ok; touch /scratch/y && echo rw-ok");
    let l = mountinfo_line(&out, "/data");
    assert!(
        l.contains(" ro,") && l.contains("nosuid") && l.contains("nodev"),
        "{l}"
    );
    assert!(mountinfo_line(&out, "/etc/single").contains(" ro,"));
    let l = mountinfo_line(&out, "/scratch");
    assert!(
        l.contains("noexec") && l.contains("tmpfs") && l.contains("size=1024k"),
        "{l}"
    );
    let l = mountinfo_line(&out, "/deep/new/dir");
    assert!(
        !l.contains("shared:") && !l.contains("master:"),
        "private: {l}"
    );
    assert!(
        out.contains("from-host")
            && out.contains("single-file")
            && out.contains("ro-ok")
            && out.contains("rw-ok"),
        "{out}"
    );
    assert!(!host.join("x").exists());
    let l = mountinfo_line(&out, "/proc");
    assert!(l.contains("proc"));
    assert!(mountinfo_line(&out, "/sys").contains(" ro,"));
    assert!(mountinfo_line(&out, "/dev/pts").contains("devpts"));
    assert!(mountinfo_line(&out, "/dev/mqueue").contains("mqueue"));
}

#[test]
fn cgroup_mount_is_read_only() {
    let mut b = Bundle::new("cgmount", &[]);
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    let out = b.sh("cat /proc/self/mountinfo; ls /sys/fs/cgroup");
    assert!(
        mountinfo_line(&out, "/sys/fs/cgroup").contains(" ro,"),
        "{out}"
    );
    for l in out.lines().filter(|l| {
        l.split_whitespace()
            .nth(4)
            .is_some_and(|d| d.starts_with("/sys/fs/cgroup/"))
    }) {
        assert!(l.contains(" ro,"), "every hierarchy read-only: {l}");
    }
    assert!(out.contains("memory") || out.contains("unified"), "{out}");
}

#[test]
fn devices_default_and_configured() {
    let mut b = Bundle::new("devices", &[]);
    b.config["linux"]["devices"] = json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 3, "fileMode": 0o600, "uid": 7, "gid": 8}]);
    let out = b.sh("ls -ln /dev; echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c");
    for (name, mm) in [
        ("null", "1,   3"),
        ("zero", "1,   5"),
        ("full", "1,   7"),
        ("random", "1,   8"),
        ("urandom", "1,   9"),
        ("tty", "5,   0"),
    ] {
        let l = out
            .lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no /dev/{name}: {out}"));
        assert!(l.starts_with("crw-rw-rw-") && l.contains(mm), "{l}");
    }
    let l = out.lines().find(|l| l.ends_with(" mydev")).unwrap();
    assert!(
        l.starts_with("crw-------") && l.contains(" 7 ") && l.contains(" 8 "),
        "{l}"
    );
    assert!(
        out.contains("ptmx -> pts/ptmx") && out.contains("fd -> /proc/self/fd"),
        "{out}"
    );
    assert!(out.contains("null-ok") && out.contains('4'), "{out}");
}

/// Without a /dev tmpfs the image's own /dev is used: whatever it has at a
/// device's name (a file, a symlink aimed at the host) is replaced.
#[test]
fn devices_replace_what_the_image_has() {
    let mut b = Bundle::new("devreplace", &[]);
    b.config["mounts"].as_array_mut().unwrap().retain(|m| {
        m["destination"] != "/dev" && !m["destination"].as_str().unwrap().starts_with("/dev/")
    });
    let dev = b.rootfs().join("dev");
    std::fs::write(dev.join("zero"), "not a device").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dev.join("null")).unwrap();
    let out = b.sh("ls -ln /dev/null /dev/zero; echo x > /dev/null && echo null-ok");
    let listed: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('c') || l.starts_with('l') || l.starts_with('-'))
        .collect();
    assert_eq!(listed.len(), 2, "ls shows both nodes:\n{out}");
    for l in listed {
        assert!(l.starts_with("crw-rw-rw-"), "{l}\n{out}");
    }
    assert!(out.contains("null-ok"), "{out}");
    assert_eq!(
        std::fs::read_link(dev.join("null")).ok(),
        None,
        "the host side still shows a symlink"
    );
}

#[test]
fn masked_and_readonly_paths_and_readonly_root() {
    let mut b = Bundle::new("masked", &[]);
    b.config["root"]["readonly"] = true.into();
    let out = b.sh("cat /proc/self/mountinfo; wc -c < /proc/keys; ls /proc/acpi | wc -l; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null || echo sys-ro; touch /rootfile 2>/dev/null || echo root-ro; touch /dev/shm/ok && echo shm-rw");
    assert!(
        out.contains("sys-ro") && out.contains("root-ro") && out.contains("shm-rw"),
        "{out}"
    );
    assert!(mountinfo_line(&out, "/").contains(" ro,"), "{out}");
    assert!(
        mountinfo_line(&out, "/proc/keys").contains("/null"),
        "masked by /dev/null: {out}"
    );
    assert!(
        mountinfo_line(&out, "/proc/acpi").contains("tmpfs"),
        "{out}"
    );
    assert!(mountinfo_line(&out, "/proc/sys").contains(" ro,"), "{out}");
}

#[test]
fn symlinks_cannot_escape_the_rootfs() {
    let mut b = Bundle::new("escape", &[]);
    let outside = b.dir.join("outside");
    // An absolute symlink and a ../ symlink pointing at the host.
    std::os::unix::fs::symlink(&outside, b.rootfs().join("abs")).unwrap();
    std::os::unix::fs::symlink(
        "../../../../../../../..".to_string() + outside.to_str().unwrap(),
        b.rootfs().join("rel"),
    )
    .unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/abs/m1", "type": "tmpfs", "source": "tmpfs"}));
    mounts.push(json!({"destination": "/rel/m2", "type": "tmpfs", "source": "tmpfs"}));
    b.config["linux"]["devices"] =
        json!([{"path": "/abs/evil-dev", "type": "c", "major": 1, "minor": 3}]);
    let out = b.sh("cat /proc/self/mountinfo");
    assert!(!outside.exists(), "runtime wrote outside the rootfs");
    assert!(
        b.rootfs()
            .join(outside.strip_prefix("/").unwrap())
            .join("m1")
            .exists(),
        "created inside the rootfs instead"
    );
    assert!(out.contains(&format!("{}/m1", outside.display())), "{out}");
}

#[test]
fn image_dev_symlink_to_host_is_contained() {
    let mut b = Bundle::new("devlink", &[]);
    // The image's /dev is a symlink to a host directory (2026 advisory).
    let outside = b.dir.join("hostdev");
    std::fs::remove_dir(b.rootfs().join("dev")).unwrap();
    std::os::unix::fs::symlink(&outside, b.rootfs().join("dev")).unwrap();
    let out = b.sh("ls /dev");
    assert!(!outside.exists(), "device nodes written on the host");
    assert!(out.contains("null"), "{out}");
}
