//! process.* and linux.* settings, each checked from inside the container.

mod common;
use common::*;
use serde_json::json;

#[test]
fn user_groups_umask_cwd_env_home() {
    let mut b = Bundle::new("ids", &[]);
    b.config["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 27], "umask": 0o027});
    b.config["process"]["cwd"] = "/work/dir".into();
    b.config["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push("BERTH_TEST=yes it works".into());
    let out =
        b.sh("id; umask; pwd; echo \"$BERTH_TEST\"; echo $HOME; grep Groups /proc/self/status");
    assert!(out.contains("uid=1000(user) gid=1000(user)"), "{out}");
    assert!(
        out.contains("groups=5,27") || out.contains("groups=5(5),27(27)") || out.contains(",27"),
        "{out}"
    );
    assert!(out.contains("0027"), "umask: {out}");
    assert!(out.contains("/work/dir"), "cwd: {out}");
    assert!(out.contains("yes it works"), "env: {out}");
    assert!(out.contains("/home/user"), "HOME from /etc/passwd: {out}");
    assert!(out.contains("Groups:\t5 27"), "{out}");
}

#[test]
fn sigpipe_is_not_ignored_in_the_container() {
    // berth ignores SIGPIPE (Rust runtime); the container must not inherit
    // that: SigIgn bit 12 is SIGPIPE (13).
    let mut b = Bundle::new("sigpipe", &[]);
    let out = b.sh("grep SigIgn /proc/self/status");
    let mask = out
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(mask & (1 << 12), 0, "{out}");
}

#[test]
fn capabilities_all_sets_and_no_new_privs() {
    let mut b = Bundle::new("caps", &[]);
    // CAP_CHOWN=0, CAP_KILL=5, CAP_NET_BIND_SERVICE=10
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"]
    });
    b.config["process"]["noNewPrivileges"] = true.into();
    let out = b.sh("grep -E '^(Cap|NoNewPrivs)' /proc/self/status");
    // sh's own sets (exec of grep recomputes; ambient keeps KILL)
    assert!(out.contains("CapBnd:\t0000000000000421"), "{out}");
    assert!(out.contains("CapInh:\t0000000000000420"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000020"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    // Non-root user: only ambient survives exec into effective.
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["noNewPrivileges"] = false.into();
    let out = b.sh("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status");
    assert!(out.contains("CapEff:\t0000000000000020"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
}

#[test]
fn rlimits_oom_score_hostname_sysctl() {
    let mut b = Bundle::new("rlim", &[]);
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    b.config["process"]["oomScoreAdj"] = 321.into();
    b.config["hostname"] = "berth-host".into();
    let ttl = "/proc/sys/net/ipv4/ip_default_ttl";
    let host_ttl = std::fs::read_to_string(ttl).unwrap();
    assert_ne!(
        host_ttl.trim(),
        "33",
        "the test needs a host TTL other than 33"
    );
    b.config["linux"]["sysctl"] = json!({
        "net.ipv4.ip_forward": "1", "kernel.msgmax": "4096", "net.ipv4.ip_default_ttl": "33"
    });
    let out = b.sh("grep -E 'open files|core file' /proc/self/limits; cat /proc/self/oom_score_adj; hostname; cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax /proc/sys/net/ipv4/ip_default_ttl");
    assert!(
        out.lines()
            .any(|l| l.starts_with("Max open files") && l.contains("123") && l.contains("456")),
        "{out}"
    );
    assert!(
        out.lines().any(
            |l| l.starts_with("Max core file size") && l.split_whitespace().nth(4) == Some("0")
        ),
        "{out}"
    );
    assert!(out.contains("321"), "{out}");
    assert!(out.contains("berth-host"), "{out}");
    assert!(out.contains("\n1\n4096\n33"), "sysctl: {out}");
    // A net.* sysctl lands in the container's network namespace only.
    assert_eq!(
        std::fs::read_to_string(ttl).unwrap(),
        host_ttl,
        "host TTL changed"
    );
}

#[test]
fn namespaces_pid_net_ipc_uts_and_host_network() {
    let mut b = Bundle::new("ns", &[]);
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    let out = b.sh(
        "echo pid=$$; readlink /proc/self/ns/net; ls /sys/class/net | tr '\\n' ' '; echo; cat /proc/net/dev | wc -l",
    );
    assert!(out.contains("pid=1"), "{out}");
    // sysfs was mounted in the container's network namespace: only its lo.
    assert!(
        out.lines().any(|l| l.trim() == "lo"),
        "/sys/class/net: {out}"
    );
    assert!(
        !out.contains(host_net.to_str().unwrap()),
        "own netns expected: {out}"
    );
    // only lo: 2 header lines + 1
    assert!(out.lines().last().unwrap().trim() == "3", "{out}");
    b.config["linux"]["namespaces"] = json!([{"type": "mount"}]);
    b.config["hostname"] = serde_json::Value::Null;
    let out = b.sh("readlink /proc/self/ns/net");
    assert!(
        out.contains(host_net.to_str().unwrap()),
        "host netns expected: {out}"
    );
}

#[test]
fn join_namespace_by_path() {
    let mut a = Bundle::new("join-a", &["sleep", "30"]);
    let ida = a.id("a");
    assert!(a.create(&ida).status.success());
    let pid = a.state(&ida).unwrap()["pid"].as_i64().unwrap();
    let target = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let target_ipc = std::fs::read_link(format!("/proc/{pid}/ns/ipc")).unwrap();
    let mut b = Bundle::new("join-b", &[]);
    b.config["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")}, {"type": "uts"}, {"type": "mount"}
    ]);
    let out = b.sh("echo pid=$$; readlink /proc/self/ns/net; readlink /proc/self/ns/ipc");
    assert!(out.contains("pid=1"), "{out}");
    assert!(out.contains(target.to_str().unwrap()), "{out}");
    assert!(out.contains(target_ipc.to_str().unwrap()), "{out}");
    assert!(a.berth(&["delete", "--force", &ida]).status.success());
}

#[test]
fn no_host_fd_leaks_and_preserved_fds() {
    let mut b = Bundle::new("fds", &[]);
    // Only 0,1,2 plus the directory ls itself opens.
    let out = b.sh("ls /proc/self/fd | wc -l; for f in /proc/$$/fd/*; do readlink $f; done");
    let n: i32 = out.lines().next().unwrap().trim().parse().unwrap();
    assert!(n <= 4, "unexpected fds: {out}");
    assert!(
        !out.contains(b.dir.to_str().unwrap())
            || out
                .lines()
                .skip(1)
                .all(|l| l.ends_with(".out") || l.contains("null") || l.ends_with(".err")),
        "host fd leaked: {out}"
    );
    // LISTEN_FDS passes fd 3 through and sets the variables.
    b.config["process"]["args"] = json!([
        "sh",
        "-c",
        "echo fds=$LISTEN_FDS pid=$LISTEN_PID; cat <&3 || echo no-fd-3"
    ]);
    b.write_config();
    let payload = b.dir.join("payload");
    std::fs::write(&payload, "through-fd-3").unwrap();
    let f = std::fs::File::open(&payload).unwrap();
    use std::os::fd::AsRawFd;
    let raw = f.as_raw_fd();
    let out_path = b.dir.join("lf.out");
    let run_activated = |id: &str, listen_pid: &str| {
        // `exec` keeps the shell's pid, so $$ is berth's own pid.
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "LISTEN_PID={listen_pid} exec \"$0\" --root \"$1\" run --bundle \"$2\" {id}"
            ))
            .arg(berth())
            .arg(&b.root)
            .arg(&b.dir)
            .env("LISTEN_FDS", "1")
            .stdout(std::fs::File::create(&out_path).unwrap());
        cmd
    };
    // LISTEN_PID naming another process: the variables are not ours.
    let st = run_activated("lf-other", "1").status().unwrap();
    assert!(st.success());
    let got = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        got.contains("fds= pid=") && got.contains("no-fd-3"),
        "{got}"
    );
    let mut cmd = run_activated("lf-x", "$$");
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            // dup2 onto itself keeps O_CLOEXEC, so clear it explicitly.
            if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let st = cmd.status().unwrap();
    assert!(st.success());
    let got = std::fs::read_to_string(&out_path).unwrap();
    assert!(got.contains("fds=1 pid=1"), "{got}");
    assert!(got.contains("through-fd-3"), "{got}");
}

#[test]
fn refuses_to_execute_itself() {
    let mut b = Bundle::new("selfexec", &["/proc/self/exe"]);
    let id = b.id("self");
    let o = b.create(&id);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CVE-2019-5736"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The same through a #! chain.
    std::fs::write(b.rootfs().join("bin/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(
        b.rootfs().join("bin/evil"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    b.config["process"]["args"] = json!(["/bin/evil"]);
    let id = b.id("self2");
    let o = b.create(&id);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("CVE-2019-5736"));
    assert!(!b.root.join(&id).exists());
}

#[test]
fn exec_into_running_container() {
    let mut b = Bundle::new("exec", &["sleep", "30"]);
    b.config["hostname"] = "exec-host".into();
    let id = b.id("exec");
    assert!(b.create(&id).status.success());
    // As runc: a created, not yet started, container takes processes (a Slurm
    // step's container is never started).
    let o = b.berth(&["exec", &id, "hostname"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "exec-host");
    assert_eq!(b.status(&id), "created");
    assert!(b.berth(&["start", &id]).status.success());
    let o = b.berth(&["exec", &id, "sh", "-c", "hostname; echo pid=$$; exit 5"]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("exec-host"), "{out}");
    assert!(!out.contains("pid=1\n"), "{out}");
    // --process JSON, detached, with a pid file
    let pj = b.dir.join("proc.json");
    std::fs::write(
        &pj,
        serde_json::to_vec(
            &json!({"args": ["sleep", "5"], "cwd": "/", "user": {"uid": 0, "gid": 0}}),
        )
        .unwrap(),
    )
    .unwrap();
    let pidf = b.dir.join("exec.pid");
    let o = b.berth(&[
        "exec",
        "--detach",
        "--pid-file",
        pidf.to_str().unwrap(),
        "--process",
        pj.to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid: i32 = std::fs::read_to_string(&pidf)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let init = b.state(&id).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap(),
        std::fs::read_link(format!("/proc/{init}/ns/pid")).unwrap()
    );
    // exec into a stopped container fails
    assert!(b.berth(&["kill", &id, "KILL"]).status.success());
    b.wait_stopped(&id);
    assert!(!b.berth(&["exec", &id, "true"]).status.success());
}
