//! The six hook stages: order, state on stdin, argv/env, timeouts and the
//! failure semantics of each stage.

mod common;
use berth_tests::proc::wait_until;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A host hook script that records its stage, stdin and env.
fn host_hook(b: &Bundle, stage: &str) -> Value {
    let out = b.dir.join("hookout");
    std::fs::create_dir_all(&out).unwrap();
    let script = b.dir.join(format!("{stage}.sh"));
    std::fs::write(&script, format!("#!/bin/sh\ncat > {o}/{stage}.json\necho \"$0 $1 $HOOK_ENV\" > {o}/{stage}.args\necho {stage} >> {o}/order\n", o = out.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    json!({"path": script, "args": [format!("argv0-{stage}"), "first"], "env": ["HOOK_ENV=env-ok"], "timeout": 10})
}

#[test]
fn all_stages_in_order_with_state() {
    let mut b = Bundle::new(
        "hooks",
        &["sh", "-c", "echo user-process >> /hookout/order"],
    );
    let out = b.dir.join("hookout");
    let hooks = json!({
        "prestart": [host_hook(&b, "prestart")],
        "createRuntime": [host_hook(&b, "createRuntime")],
        "createContainer": [host_hook(&b, "createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /hookout/startContainer.json; echo startContainer >> /hookout/order"]}],
        "poststart": [host_hook(&b, "poststart")],
        "poststop": [host_hook(&b, "poststop")]
    });
    b.config["hooks"] = hooks;
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/hookout", "type": "bind", "source": out, "options": ["rbind"]}),
    );
    b.config["annotations"] = json!({"org.example.key": "value"});
    let id = b.id("hooks");
    let o = b.create(&id);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap();
    assert!(b.berth(&["start", &id]).status.success());
    b.wait_stopped(&id);
    assert!(b.berth(&["delete", &id]).status.success());
    let order = std::fs::read_to_string(out.join("order")).unwrap();
    let got: Vec<&str> = order.lines().collect();
    // poststart may race the (very short) user process; everything else is ordered.
    let without_user: Vec<&str> = got
        .iter()
        .copied()
        .filter(|l| *l != "user-process")
        .collect();
    assert_eq!(
        without_user,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{order}"
    );
    let u = got.iter().position(|l| *l == "user-process").unwrap();
    assert!(u > got.iter().position(|l| *l == "startContainer").unwrap());
    for stage in [
        "prestart",
        "createRuntime",
        "createContainer",
        "poststart",
        "poststop",
    ] {
        let st: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(format!("{stage}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(st["id"], id.as_str(), "{stage}");
        assert_eq!(st["bundle"], b.dir.to_str().unwrap(), "{stage}");
        assert_eq!(st["annotations"]["org.example.key"], "value", "{stage}");
        let want = match stage {
            "poststart" => "running",
            "poststop" => "stopped",
            _ => "creating",
        };
        assert_eq!(st["status"], want, "{stage}");
        if stage != "poststop" {
            assert_eq!(st["pid"], pid, "{stage}");
        }
        let args = std::fs::read_to_string(out.join(format!("{stage}.args"))).unwrap();
        // $0 of a script is its path (the kernel rewrites argv[0]); args[1..] and env arrive.
        assert!(args.trim().ends_with(" first env-ok"), "{stage}: {args}");
    }
    let st: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("startContainer.json")).unwrap())
            .unwrap();
    assert_eq!(st["id"], id.as_str());
}

fn failing(stage: &str) -> Value {
    json!({stage: [{"path": "/bin/sh", "args": ["sh", "-c", "echo hook-said-no >&2; exit 3"]}]})
}

#[test]
fn failing_create_stage_hooks_tear_down() {
    for stage in ["prestart", "createRuntime", "createContainer"] {
        let mut b = Bundle::new("hookfail", &["sleep", "30"]);
        b.config["hooks"] = failing(stage);
        let id = b.id(stage);
        let o = b.create(&id);
        assert_clean_failure(&b, &id, &o, stage);
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("hook-said-no"),
            "hook output in the error"
        );
    }
}

#[test]
fn failing_start_container_hook_stops_the_container() {
    let mut b = Bundle::new("startfail", &["sh", "-c", "echo must-not-run"]);
    b.config["hooks"] = failing("startContainer");
    let id = b.id("sc");
    assert!(b.create(&id).status.success());
    let o = b.berth(&["start", &id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("startContainer"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    b.wait_stopped(&id);
    assert!(!b.output_of(&id).contains("must-not-run"));
    assert!(b.berth(&["delete", &id]).status.success());
}

#[test]
fn failing_poststart_and_poststop_only_warn() {
    let mut b = Bundle::new("postfail", &["true"]);
    let mut h = failing("poststart");
    h["poststop"] = failing("poststop")["poststop"].clone();
    b.config["hooks"] = h;
    let id = b.id("post");
    assert!(b.create(&id).status.success());
    let o = b.berth(&["start", &id]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("warning: poststart"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    b.wait_stopped(&id);
    let o = b.berth(&["delete", &id]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: poststop"));
    assert!(!b.root.join(&id).exists());
}

/// A failing poststart/poststop hook does not stop the ones after it
/// (runtime-spec: "the remaining hooks and lifecycle continue").
#[test]
fn hooks_after_a_failing_poststart_or_poststop_still_run() {
    let mut b = Bundle::new("postfailnext", &["true"]);
    let out = b.dir.join("post-order");
    let ok = |stage: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {stage}-after-failure >> {}", out.display())]});
    let bad = failing("poststart")["poststart"][0].clone();
    b.config["hooks"] = json!({
        "poststart": [bad.clone(), ok("poststart")],
        "poststop": [bad, ok("poststop")]
    });
    let id = b.id("postnext");
    assert!(b.create(&id).status.success());
    let o = b.berth(&["start", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: poststart"));
    b.wait_stopped(&id);
    let o = b.berth(&["delete", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("warning: poststop"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "poststart-after-failure\npoststop-after-failure\n"
    );
}

#[test]
fn hook_timeout() {
    let mut b = Bundle::new("hooktimeout", &["true"]);
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}]});
    let id = b.id("to");
    let t = Instant::now();
    let o = b.create(&id);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_clean_failure(&b, &id, &o, "timed out");
}

/// `create` records the state while the init builds the rootfs: until the
/// init reports, `state` says "creating" and `start` is refused.
#[test]
fn state_is_creating_until_the_init_reports() {
    let mut b = Bundle::new("creating", &["true"]);
    let (inside, release) = (b.dir.join("in-hook"), b.dir.join("release"));
    let script = format!(
        "touch {i}; n=0; while [ ! -e {r} ] && [ $n -lt 2000 ]; do sleep 0.01; n=$((n+1)); done",
        i = inside.display(),
        r = release.display()
    );
    b.config["hooks"] =
        json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]});
    b.write_config();
    let id = b.id("creating");
    let pid_file = b.dir.join("pid");
    let mut create = b
        .cmd()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || inside.exists()),
        "the createContainer hook never ran"
    );
    assert_eq!(b.status(&id), "creating");
    let o = b.berth(&["start", &id]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("creating"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(&release, "").unwrap();
    assert!(create.wait().unwrap().success());
    assert_eq!(b.status(&id), "created");
    let pid = b.state(&id).unwrap()["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert!(b.berth(&["delete", &id]).status.success());
}

/// Runtime hooks run in the runtime's (here the host's) network namespace,
/// and see the container already in its own.
#[test]
fn runtime_hooks_run_in_the_host_network_and_see_the_containers() {
    let mut b = Bundle::new("hooks-net", &[]);
    let ns = b.config["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.iter()
            .any(|n| n["type"] == "network" && n.get("path").is_none()),
        "the default test config makes a network namespace"
    );
    let out = b.dir.join("hookout");
    std::fs::create_dir_all(&out).unwrap();
    let script = b.dir.join("net.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\npid=$(sed -n 's/.*\"pid\":\\([0-9]*\\).*/\\1/p')\nreadlink /proc/self/ns/net > {o}/hook\nreadlink /proc/$pid/ns/net > {o}/container\n",
            o = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    b.config["hooks"] = json!({"createRuntime": [{"path": script}]});
    let inside = b.sh("readlink /proc/self/ns/net");
    let host = std::fs::read_link("/proc/self/ns/net").unwrap();
    let read = |f: &str| {
        std::fs::read_to_string(out.join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("hook"),
        host.to_str().unwrap(),
        "the hook's own network namespace"
    );
    assert_ne!(read("container"), read("hook"), "the container has its own");
    assert!(
        inside.contains(&read("container")),
        "container saw {inside}"
    );
}
