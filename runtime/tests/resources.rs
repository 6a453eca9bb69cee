//! cgroup limits (v1 hybrid here, v2 where the host has it), console
//! socket, and refusal of what berth cannot apply.

mod common;
use common::*;
use serde_json::json;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[test]
fn cgroup_limits_are_applied_and_removed() {
    let mut b = Bundle::new("cgroups", &["sh", "-c", "cat /proc/self/cgroup; sleep 30"]);
    let id = b.id("cg");
    let path = format!("/berth-test/{id}");
    b.config["linux"]["cgroupsPath"] = path.clone().into();
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 67108864},
        "pids": {"limit": 100},
        "cpu": {"shares": 512},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    });
    assert!(b.create(&id).status.success(), "{}", b.output_of(&id));
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap();
    let v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| {
            l.split_whitespace().nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 ")
        });
    let procs = if v2 {
        std::fs::read_to_string(format!("/sys/fs/cgroup{path}/cgroup.procs")).unwrap()
    } else {
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{c}{path}/{f}")).unwrap()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes").trim(), "67108864");
        assert_eq!(read("pids", "pids.max").trim(), "100");
        assert_eq!(read("cpu", "cpu.shares").trim(), "512");
        let devs = read("devices", "devices.list");
        assert!(
            devs.contains("c 1:3 rw") && !devs.contains("a *:* rwm"),
            "{devs}"
        );
        read("pids", "cgroup.procs")
    };
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "init in the cgroup: {procs}"
    );
    assert!(b.berth(&["start", &id]).status.success());
    // The container prints its cgroup then sleeps: wait for the line.
    let out = b.wait_output(&id, &path);
    assert!(out.contains(&path), "{out}");
    assert!(b.berth(&["delete", "--force", &id]).status.success());
    let leaf = if v2 {
        format!("/sys/fs/cgroup{path}")
    } else {
        format!("/sys/fs/cgroup/pids{path}")
    };
    assert!(!std::path::Path::new(&leaf).exists(), "cgroup removed");
    // berth removes the parent it made unless another test's container is in
    // it; then that one is left to clean up here.
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(e.path().join("berth-test"));
    }
    let _ = std::fs::remove_dir("/sys/fs/cgroup/berth-test");
}

/// The pids hierarchy's view of `path` (present on v1 and v2 hosts alike).
fn pids_dir(path: &str) -> std::path::PathBuf {
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids");
    if v1.exists() {
        v1.join(path.trim_start_matches('/'))
    } else {
        std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    }
}

#[test]
fn existing_cgroup_is_joined_and_kept_new_ones_are_not_leaked() {
    // A caller-made cgroup (Podman, systemd) is joined and left in place.
    let mut b = Bundle::new("cgkeep", &["sleep", "30"]);
    let id = b.id("keep");
    let path = format!("/berth-test-keep/{id}");
    let dir = pids_dir(&path);
    std::fs::create_dir_all(&dir).unwrap();
    b.config["linux"]["cgroupsPath"] = path.clone().into();
    b.config["linux"]["resources"] = json!({"pids": {"limit": 50}});
    assert!(b.create(&id).status.success(), "{}", b.output_of(&id));
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{procs}"
    );
    assert!(b.berth(&["delete", "--force", &id]).status.success());
    assert!(
        dir.exists(),
        "a cgroup berth did not create must survive delete"
    );
    let _ = std::fs::remove_dir(&dir);
    let _ = std::fs::remove_dir(dir.parent().unwrap());

    // A limit the kernel refuses fails the create and leaves no cgroup.
    let id = b.id("refused");
    let path = format!("/berth-test-refused/{id}");
    b.config["linux"]["cgroupsPath"] = path.clone().into();
    b.config["linux"]["resources"] =
        json!({"pids": {"limit": 50}, "cpu": {"quota": 1, "period": 100000}});
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "cgroup");
    assert!(!pids_dir(&path).exists(), "half-made cgroup {} left", path);
    let _ = std::fs::remove_dir(pids_dir("/berth-test-refused"));
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(
            !e.path().join(path.trim_start_matches('/')).exists(),
            "{:?}",
            e.path()
        );
        let _ = std::fs::remove_dir(e.path().join("berth-test-refused"));
    }

    // `..` could climb out of the cgroup tree: refused before anything is made.
    let id = b.id("dotdot");
    b.config["linux"]["cgroupsPath"] = "/berth-test/../../escape".into();
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "`..` is not allowed");
}

/// Every hierarchy's root: /sys/fs/cgroup on v2, each mounted one on v1
/// (co-mounted controllers are symlinks to theirs, skipped).
fn hierarchies() -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return vec![root.into()];
    }
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

#[test]
fn nested_cgroups_path_parents_berth_made_go_at_delete() {
    let mut b = Bundle::new("cgnest", &["sleep", "30"]);
    let top = b.id("nest");
    // A relative cgroupsPath goes under berth's own subtree.
    let at = |h: &std::path::Path, rel: &str| h.join("berth").join(&top).join(rel);
    // `top` exists before in the pids hierarchy only: there it must stay.
    let pids_top = pids_dir(&format!("/berth/{top}"));
    std::fs::create_dir_all(&pids_top).unwrap();
    let one = b.id("one");
    b.config["linux"]["cgroupsPath"] = format!("{top}/x/one").into();
    assert!(b.create(&one).status.success(), "{}", b.output_of(&one));
    assert!(b.berth(&["delete", "--force", &one]).status.success());
    for h in hierarchies() {
        let left = if at(&h, "") == pids_top {
            at(&h, "x")
        } else {
            at(&h, "")
        };
        assert!(!left.exists(), "{} left behind", left.display());
    }
    assert!(pids_top.is_dir(), "a parent that existed before must stay");

    // A parent berth made for one container stays while another's cgroup is in it.
    let two = b.id("two");
    let three = b.id("three");
    b.config["linux"]["cgroupsPath"] = format!("{top}/x/two").into();
    assert!(b.create(&two).status.success(), "{}", b.output_of(&two));
    b.config["linux"]["cgroupsPath"] = format!("{top}/x/three").into();
    assert!(b.create(&three).status.success(), "{}", b.output_of(&three));
    assert!(b.berth(&["delete", "--force", &two]).status.success());
    for h in hierarchies() {
        assert!(!at(&h, "x/two").exists());
        assert!(at(&h, "x/three").is_dir(), "{}: in use", h.display());
    }
    assert_eq!(b.status(&three), "created");
    assert!(b.berth(&["delete", "--force", &three]).status.success());
    // `x` was made for `two`, so `three`'s delete leaves it: ours to remove.
    for h in hierarchies() {
        let _ = std::fs::remove_dir(at(&h, "x"));
        let _ = std::fs::remove_dir(at(&h, ""));
    }
}

/// A cgroup namespace with a cgroupsPath is rooted at the container's own
/// cgroup, as runc makes it: the container sees "/", not the host's path.
/// Twice: created with the init (clone), and on the general path (a
/// namespace joined by path, which forks once more into the pid namespace).
#[test]
fn cgroup_namespace_is_rooted_at_the_containers_cgroup() {
    let mut b = Bundle::new("cgns", &["cat", "/proc/self/cgroup"]);
    for (name, join_ipc) in [("clone", false), ("forked", true)] {
        let leaf = b.id(name);
        b.config["linux"]["cgroupsPath"] = leaf.clone().into();
        let mut ns =
            json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}, {"type": "cgroup"}]);
        if join_ipc {
            ns.as_array_mut()
                .unwrap()
                .push(json!({"type": "ipc", "path": "/proc/self/ns/ipc"}));
        }
        b.config["linux"]["namespaces"] = ns;
        let out = b.run(name);
        assert!(!out.trim().is_empty(), "{name}: no output");
        assert!(
            !out.contains(&leaf),
            "{name}: the container sees its host path:\n{out}"
        );
        // Every hierarchy berth placed it in shows as the namespace root.
        assert!(out.lines().any(|l| l.ends_with(":/")), "{name}:\n{out}");
    }
}

#[test]
fn unsupported_resources_are_refused_not_ignored() {
    let mut b = Bundle::new("cgunsup", &["true"]);
    b.config["linux"]["resources"] = json!({"blockIO": {"weight": 10}});
    let id = b.id("x");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "not supported yet: linux.resources.blockIO");
    for (resources, what) in [
        (
            json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}),
            "hugepageLimits",
        ),
        (
            json!({"network": {"classID": 1}}),
            "linux.resources.network",
        ),
        (json!({"memory": {"kernel": 1048576}}), "memory.kernel"),
    ] {
        b.config["linux"]["resources"] = resources;
        let id = b.id("r");
        let o = b.create(&id);
        assert_clean_failure(&b, &id, &o, what);
    }
    b.config["linux"]["resources"] = serde_json::Value::Null;
    b.config["linux"]["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"});
    let id = b.id("y");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "not supported yet: seccomp listenerPath");
}

#[test]
fn seccomp_profile_is_enforced() {
    let mut b = Bundle::new("seccomp", &[]);
    // Deny mkdir with EPERM, deny personality() unless its argument is
    // 0xffffffff (a query), allow everything else; also an unknown name.
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["sethostname"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 4, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    b.config["process"]["capabilities"] = json!({"bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"]});
    let out = b.sh("mkdir /tmp/x 2>&1; touch /tmp/f; chmod 600 /tmp/f 2>&1; hostname abcd 2>&1; hostname abcde && hostname; grep Seccomp: /proc/self/status");
    assert!(
        out.contains("Operation not permitted"),
        "mkdir denied with EPERM: {out}"
    );
    assert!(
        out.contains("Function not implemented") || out.contains("not implemented"),
        "chmod denied with ENOSYS: {out}"
    );
    assert!(
        out.contains("abcde"),
        "sethostname with length 5 allowed: {out}"
    );
    assert!(
        out.lines()
            .filter(|l| l.contains("Operation not permitted"))
            .count()
            >= 2,
        "sethostname length 4 denied: {out}"
    );
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // Deny by default, allow a list: the shell still runs.
    let allow: Vec<&str> = vec![
        "read",
        "write",
        "openat",
        "open",
        "close",
        "fstat",
        "newfstatat",
        "stat",
        "lstat",
        "execve",
        "exit_group",
        "exit",
        "brk",
        "mmap",
        "munmap",
        "mprotect",
        "arch_prctl",
        "set_tid_address",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getpid",
        "getppid",
        "uname",
        "fcntl",
        "dup2",
        "dup3",
        "wait4",
        "fork",
        "vfork",
        "clone",
        "clone3",
        "getcwd",
        "prlimit64",
        "readlink",
        "access",
        "lseek",
        "getdents64",
        "pipe",
        "pipe2",
        "sigaltstack",
        "poll",
        "set_robust_list",
        "rseq",
        "futex",
        "getrandom",
        "statx",
        "faccessat",
        "faccessat2",
        "pread64",
        "chdir",
        "setpgid",
        "getpgrp",
        "capget",
        "capset",
        "prctl",
        "setresuid",
        "setresgid",
        "setgroups",
        "close_range",
        "setsid",
    ];
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"}]});
    let out = b.sh("echo still-works; mkdir /tmp/y 2>&1 || echo denied");
    assert!(
        out.contains("still-works") && out.contains("denied"),
        "{out}"
    );
}

fn recv_fd(sock: &std::os::unix::net::UnixStream) -> OwnedFd {
    unsafe {
        let mut buf = [0u8; 256];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        assert!(libc::recvmsg(sock.as_raw_fd(), &mut msg, 0) >= 0);
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS);
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const i32))
    }
}

#[test]
fn terminal_through_console_socket() {
    let mut b = Bundle::new("console", &["sh", "-c", "tty; stty size; echo tty-ok"]);
    b.config["process"]["terminal"] = true.into();
    b.config["process"]["consoleSize"] = json!({"height": 40, "width": 100});
    b.write_config();
    let sock = b.dir.join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let t = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        recv_fd(&s)
    });
    let id = b.id("tty");
    let o = b
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .args(["--console-socket"])
        .arg(&sock)
        .arg(&id)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let master = t.join().unwrap();
    assert!(b.berth(&["start", &id]).status.success());
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match std::io::Read::read(&mut f, &mut buf) {
            Ok(0) | Err(_) => break, // EIO once the slave side is closed
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("40 100"), "{out}");
    assert!(out.contains("tty-ok"), "{out}");
    b.wait_stopped(&id);
    assert!(b.berth(&["delete", &id]).status.success());
    // terminal without a socket is refused
    let id = b.id("nosock");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "console-socket");
}
