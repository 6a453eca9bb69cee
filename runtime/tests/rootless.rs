//! Rootless: an unprivileged user (created by the test) runs containers in
//! a user namespace; single mappings are written directly, ranges through
//! newuidmap/newgidmap; cgroup limits are refused clearly.

mod common;
use common::*;
use serde_json::json;

#[test]
fn rootless_single_mapping() {
    let mut b = Bundle::rootless("rootless", &[]);
    let out = b.sh("id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; hostname; echo pid=$$; ls -l /dev/null; grep CapEff /proc/self/status; cat /proc/self/mountinfo");
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    let maps: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.trim_start().starts_with('0'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(maps.iter().any(|m| m == &["0", "4242", "1"]), "{out}");
    assert!(out.contains("deny"), "{out}");
    assert!(out.contains("pid=1") && out.contains("berth"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("crw-rw-rw-") && l.ends_with("/dev/null")),
        "device bind-mounted: {out}"
    );
    assert!(out.contains(" /dev/null "), "{out}");
    // Exactly the configured set (AUDIT_WRITE 29, NET_BIND_SERVICE 10, KILL 5),
    // held inside the user namespace.
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
    // state lives under the user's root and is owned by them
    let id = b.id("st");
    assert!(b.create(&id).status.success());
    let md = std::fs::metadata(b.root.join(&id)).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), TEST_UID);
    assert!(b.berth(&["start", &id]).status.success());
    b.wait_stopped(&id);
    assert!(b.berth(&["delete", &id]).status.success());
}

#[test]
fn rootless_ranges_use_newuidmap() {
    let mut b = Bundle::rootless("rootless-range", &[]);
    let (su, sg) = (sub_start("/etc/subuid"), sub_start("/etc/subgid"));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": TEST_UID, "size": 1}, {"containerID": 1, "hostID": su, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": TEST_UID, "size": 1}, {"containerID": 1, "hostID": sg, "size": 65536}]);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [100]});
    let out = b.sh("id; cat /proc/self/uid_map; cat /proc/self/setgroups");
    assert!(
        out.contains("uid=1000(user) gid=1000(user) groups=100"),
        "{out}"
    );
    let want = su.to_string();
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", want.as_str(), "65536"]),
        "{out}"
    );
    assert!(out.contains("allow"), "{out}");
}

#[test]
fn rootless_refuses_cgroup_limits_and_missing_userns() {
    let mut b = Bundle::rootless("rootless-cg", &["true"]);
    b.config["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
    let id = b.id("cg");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "cgroup limits were requested");
    b.config["linux"]["resources"] = serde_json::Value::Null;
    b.config["linux"]["namespaces"] = json!([{"type": "mount"}, {"type": "pid"}]);
    let id = b.id("nouserns");
    let o = b.create(&id);
    assert_clean_failure(&b, &id, &o, "user namespace");
}

#[test]
fn root_gets_no_user_namespace_unless_asked() {
    let mut b = Bundle::new("root-nouserns", &[]);
    let host_user = std::fs::read_link("/proc/self/ns/user").unwrap();
    let out = b.sh("readlink /proc/self/ns/user");
    assert!(out.contains(host_user.to_str().unwrap()), "{out}");
    // ...and gets one when asked, with a range mapping written directly.
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let _ = std::os::unix::fs::chown(b.rootfs(), Some(100000), Some(100000));
    let out = b.sh("id; cat /proc/self/uid_map; readlink /proc/self/ns/user");
    assert!(!out.contains(host_user.to_str().unwrap()), "{out}");
    assert!(out.contains("uid=0(root)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["0", "100000", "65536"]),
        "{out}"
    );
}
