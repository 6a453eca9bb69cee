//! A real client: Podman (Debian's) driving berth through `--runtime`, on
//! an image imported from a local busybox tarball (no network).
//!
//! `--ulimit` lowers Podman's root default (nofile 1048576), which needs
//! CAP_SYS_RESOURCE that CI sandboxes often lack (runc fails the same way).
//! Podman's default seccomp profile is used (compiled by berth).

mod common;
use common::*;
use std::process::Command;

struct Podman {
    dir: std::path::PathBuf,
}

impl Podman {
    fn new() -> Podman {
        let dir = std::path::PathBuf::from("/tmp/berth-tests")
            .join(format!("podman-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Podman { dir }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root").arg(self.dir.join("root"));
        c.arg("--runroot").arg(self.dir.join("runroot"));
        c.args([
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--storage-driver=vfs",
            "--runtime",
        ])
        .arg(berth());
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"));
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cmd().args(args).output().unwrap();
        assert!(
            o.status.success(),
            "podman {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd().args(["rm", "-af", "-t", "0"]).output();
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
        let _ = Command::new("umount").arg("-R").arg(&self.dir).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RUN: [&str; 7] = [
    "--network=none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
    "--security-opt",
    "seccomp=unconfined",
];

#[test]
fn podman_run_exec_stop_rm() {
    let p = Podman::new();
    std::fs::write(p.dir.join("containers.conf"), "[engine]\n").unwrap();
    let rootfs = p.dir.join("rootfs");
    busybox_rootfs(&rootfs);
    let tar = p.dir.join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    p.ok(&["import", tar.to_str().unwrap(), "localhost/bb:test"]);

    let mut args = vec!["run", "--rm"];
    args.extend(RUN);
    args.extend([
        "localhost/bb:test",
        "sh",
        "-c",
        "echo hi from $(hostname); cat /proc/self/cgroup",
    ]);
    let out = p.ok(&args);
    assert!(out.contains("hi from"), "{out}");
    assert!(
        out.contains("libpod"),
        "container placed in podman's cgroup: {out}"
    );

    let mut args = vec!["run", "-d", "--name", "bg"];
    args.extend(RUN);
    args.extend(["localhost/bb:test", "sleep", "300"]);
    p.ok(&args);
    let out = p.ok(&["exec", "bg", "sh", "-c", "echo exec-ok; echo pid=$$"]);
    assert!(out.contains("exec-ok"), "{out}");
    let out = p.ok(&["inspect", "--format", "{{.State.Status}}", "bg"]);
    assert_eq!(out.trim(), "running");
    p.ok(&["stop", "-t", "1", "bg"]);
    let out = p.ok(&["inspect", "--format", "{{.State.Status}}", "bg"]);
    assert_eq!(out.trim(), "exited");
    p.ok(&["rm", "bg"]);
    let out = p.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!out.contains("bg"), "{out}");
}
