//! End-to-end tests of the test harness itself: a real Slurm cluster, real
//! registries, real pushes. Run as root (CI does).

use std::net::TcpListener;
use std::time::Duration;

use berth_tests::cluster::{Cluster, ClusterConfig, ClusterError, SecondNode};
use berth_tests::daemon::{DaemonError, Stop, StopOnDrop};
use berth_tests::registry::client::Client;
use berth_tests::registry::{Registry, RegistryConfig, RegistryError};
use berth_tests::{proc, stack};

/// A cluster of its own in a temp dir, on free ports, so a test can break or stop
/// it without touching the shared one.
fn isolated_cluster(dir: &tempfile::TempDir) -> ClusterConfig {
    let mut cfg = ClusterConfig::at(dir.path().to_path_buf());
    cfg.name = format!("iso{}", std::process::id());
    cfg.ctld_port = proc::free_port();
    cfg.slurmd_port = proc::free_port();
    cfg
}

/// Runs `srun ARGS` on the shared cluster; returns its output, failing the test
/// with srun's error when the step fails.
fn srun_ok(stack: &stack::Stack, args: &[&str]) -> String {
    let mut srun = stack.cluster.command("srun");
    srun.args(args);
    run_ok(srun)
}

/// Runs `cmd`; returns its output, failing the test with its error when it fails.
fn run_ok(mut cmd: std::process::Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn srun_runs_two_tasks_through_the_real_cluster() {
    let stack = stack::services().expect("stack starts");
    let text = srun_ok(&stack, &["-N1", "-n2", "hostname"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "two tasks, two lines: {text:?}");
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        lines.iter().all(|l| *l == host),
        "each task prints this host's name: {lines:?}"
    );
}

#[test]
fn tasks_get_distinct_ranks_and_run_as_the_job_user() {
    let stack = stack::services().expect("stack starts");
    let script = "echo $SLURM_PROCID $(id -u)";
    let mut lines: Vec<String> = srun_ok(
        &stack,
        &["-n3", "--uid", berth_tests::user::NAME, "sh", "-c", script],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    lines.sort();
    let uid = berth_tests::user::UID;
    assert_eq!(
        lines,
        vec![format!("0 {uid}"), format!("1 {uid}"), format!("2 {uid}")]
    );
}

#[test]
fn starting_twice_reuses_the_running_cluster() {
    let first = stack::services().expect("stack starts");
    let pids = first.cluster.processes();
    let again = Cluster::shared().expect("second start succeeds");
    assert!(again.is_running());
    for pid in pids
        .iter()
        .filter(|p| proc::comm(**p).is_some_and(|c| c != "slurmstepd"))
    {
        assert!(proc::is_alive(*pid), "daemon {pid} was kept, not restarted");
    }
}

#[test]
fn broken_slurm_conf_is_reported_in_one_line_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = isolated_cluster(&dir);
    cfg.extra_conf.push("NoSuchSlurmOption=42".into());
    let cluster = StopOnDrop(Cluster::new(cfg.clone()));
    let err = Cluster::start(cfg).expect_err("a bad slurm.conf must fail");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.starts_with("slurmctld failed to start"),
        "names the daemon: {msg}"
    );
    assert!(
        msg.contains("NoSuchSlurmOption"),
        "names the bad line: {msg}"
    );
    match &err {
        ClusterError::Daemon(DaemonError::Exited { tail, .. }) => {
            assert!(!tail.is_empty(), "log tail kept")
        }
        other => panic!("expected a daemon exit, got {other:?}"),
    }
    assert!(
        cluster.processes().is_empty(),
        "munged was stopped again: {:?}",
        cluster.processes()
    );
}

#[test]
fn taken_port_is_reported_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let mut cfg = isolated_cluster(&dir);
    cfg.ctld_port = squatter.local_addr().unwrap().port();
    let cluster = StopOnDrop(Cluster::new(cfg.clone()));
    let msg = Cluster::start(cfg.clone())
        .expect_err("port is taken")
        .to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains(&format!(
            "slurmctld port {} is already in use by pid {}",
            cfg.ctld_port,
            std::process::id()
        )),
        "{msg}"
    );
    assert!(cluster.processes().is_empty());
}

#[test]
fn teardown_leaves_no_daemon_or_step_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        StopOnDrop(Cluster::start(isolated_cluster(&dir)).expect("isolated cluster starts"));
    // A running job gives slurmd a slurmstepd child that teardown must also end.
    let out = cluster
        .command("sbatch")
        .args(["--parsable", "--wrap", "srun sleep 300"])
        .arg(format!("--output={}/job.out", dir.path().display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sbatch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        proc::wait_until(Duration::from_secs(20), || cluster
            .processes()
            .iter()
            .any(|p| proc::comm(*p).is_some_and(|c| c.starts_with("slurmstepd")))),
        "the job's slurmstepd runs before teardown"
    );
    let ports = [cluster.config().ctld_port, cluster.config().slurmd_port];
    cluster.stop().expect("teardown succeeds");
    assert!(
        cluster.processes().is_empty(),
        "left: {:?}",
        cluster.processes()
    );
    assert!(!cluster.is_running());
    for port in ports {
        assert!(!proc::port_in_use(port), "port {port} released");
    }
}

#[test]
fn pushed_images_are_listed_with_the_builders_digest() {
    let stack = stack::services().expect("stack starts");
    let catalog = stack::images(&stack).expect("images build and push");
    for reg in [&stack.plain, &stack.secure] {
        let client = Client::new(&reg.push_target()).unwrap();
        let repos = client.catalog().expect("catalog");
        for img in catalog.images() {
            let repo = img.repository();
            assert!(
                repos.contains(&repo),
                "{} lists {repo}: {repos:?}",
                reg.url()
            );
            let digest = client
                .manifest_digest(&repo, &img.tag)
                .expect("manifest exists");
            assert_eq!(
                digest,
                img.manifest_digest,
                "{repo}:{} on {}",
                img.tag,
                reg.url()
            );
        }
    }
}

#[test]
fn secure_registry_checks_password_and_certificate() {
    let stack = stack::services().expect("stack starts");
    let good = stack.secure.push_target();
    Client::new(&good)
        .unwrap()
        .ping()
        .expect("right password and CA are accepted");

    let mut wrong = good.clone();
    wrong.basic_auth = Some((berth_tests::registry::USER.into(), "wrong".into()));
    let err = Client::new(&wrong)
        .unwrap()
        .ping()
        .expect_err("wrong password refused");
    assert!(err.to_string().contains("401"), "{err}");

    let mut untrusted = good.clone();
    untrusted.ca_pem = None;
    let err = Client::new(&untrusted)
        .unwrap()
        .ping()
        .expect_err("self-signed CA not trusted by default");
    assert!(
        err.to_string().to_lowercase().contains("certificate")
            || err.to_string().contains("UnknownIssuer"),
        "{err}"
    );

    // The plain registry speaks HTTP only, on loopback only.
    Client::new(&stack.plain.push_target())
        .unwrap()
        .ping()
        .expect("plain registry answers");
    assert!(
        std::net::TcpStream::connect((local_non_loopback_ip(), stack.plain.config().port)).is_err()
    );
}

/// An address of this host that is not loopback (or loopback if there is none,
/// which makes the "not reachable from outside" check vacuous only on such hosts).
fn local_non_loopback_ip() -> std::net::IpAddr {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // connect() on UDP sends nothing; it only picks the outgoing interface's address.
    let _ = sock.connect("10.255.255.1:9");
    sock.local_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]))
}

#[test]
fn registry_port_conflict_and_teardown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = RegistryConfig {
        dir: dir.path().to_path_buf(),
        port: proc::free_port(),
        secure: true,
    };
    let reg = StopOnDrop(Registry::start(cfg.clone()).expect("isolated registry starts"));
    Client::new(&reg.push_target())
        .unwrap()
        .ping()
        .expect("isolated registry answers over TLS");
    let other = RegistryConfig {
        dir: dir.path().join("other"),
        ..cfg
    };
    let err = Registry::start(other)
        .map(StopOnDrop)
        .expect_err("same port twice");
    assert!(matches!(err, RegistryError::PortTaken { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    reg.stop().expect("teardown");
    assert!(reg.processes().is_empty());
}

/// An isolated cluster with a node 2 of its own (own namespace, veth and subnet,
/// distinct per `tag` in 0..4, as tests of one process run at once), so a test
/// can crash and tear it down without touching the shared one.
fn isolated_two_node_cluster(dir: &tempfile::TempDir, tag: u32) -> ClusterConfig {
    let mut cfg = isolated_cluster(dir);
    let id = std::process::id();
    let subnet = (id % 60 * 4 + tag + 10) as u8;
    cfg.second_node = Some(SecondNode {
        name: format!("iso{id}-{tag}-n2"),
        netns: format!("bt{id}{tag}"),
        host_veth: format!("bt{id}{tag}h"),
        host_addr: [10, 231, subnet, 1].into(),
        node_addr: [10, 231, subnet, 2].into(),
        forward_ports: vec![],
    });
    cfg
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

#[test]
fn second_node_survives_a_crash_and_teardown_removes_its_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = isolated_two_node_cluster(&dir, 0);
    let n2 = cfg.second_node.clone().unwrap();
    let cluster = StopOnDrop(Cluster::start(cfg.clone()).expect("two-node cluster starts"));
    assert_eq!(
        cluster.nodes(),
        vec![cluster.node().to_string(), n2.name.clone()]
    );
    assert!(n2.netns_path().exists() && link_exists(&n2.host_veth));
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        hosts.contains(&format!("{} {}", n2.node_addr, n2.name)),
        "{hosts}"
    );

    // A crash: every daemon killed at once, namespace and veth left behind.
    for pid in cluster.processes() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(proc::wait_until(Duration::from_secs(10), || cluster
        .processes()
        .is_empty()));
    assert!(n2.netns_path().exists(), "the crash left the namespace");
    // The restarted cluster is the one in the same directory, which the guard
    // above stops.
    Cluster::start(cfg).expect("restarts over the stale namespace and veth");
    let mut srun = cluster.command("srun");
    srun.args(["-p", berth_tests::cluster::MULTI_PARTITION, "-N2", "true"]);
    run_ok(srun);

    cluster.stop().expect("teardown succeeds");
    assert!(
        cluster.processes().is_empty(),
        "left: {:?}",
        cluster.processes()
    );
    assert!(!n2.netns_path().exists(), "namespace removed");
    assert!(!link_exists(&n2.host_veth), "veth removed");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(
        !hosts.contains(&n2.name),
        "/etc/hosts line removed: {hosts}"
    );
}

#[test]
fn multi_partition_runs_one_task_on_each_node() {
    let stack = stack::services().expect("stack starts");
    let cluster = &stack.cluster;
    let multi = cluster
        .multi_partition()
        .expect("the shared cluster has a multi-node partition");
    let mut names: Vec<String> = srun_ok(&stack, &["-p", multi, "-N2", "hostname"])
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut nodes = cluster.nodes();
    nodes.sort();
    assert_eq!(names, nodes, "each node's task prints that node's name");
    assert_ne!(names[0], names[1]);
    // This host resolves node 2's name to its address, as a cluster's DNS would.
    let n2 = cluster.second_node().unwrap();
    let out = std::process::Command::new("getent")
        .args(["hosts", &n2.name])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!("{} ", n2.node_addr)),
        "getent hosts {}: {text:?}",
        n2.name
    );
}

#[test]
fn second_node_has_its_own_run_and_shares_var_tmp() {
    let stack = stack::services().expect("stack starts");
    let cluster = &stack.cluster;
    let n2 = cluster
        .second_node()
        .expect("the shared cluster has node 2");
    let name = format!("berth-harness-probe-{}", std::process::id());
    let on_node = std::path::Path::new("/run").join(&name);
    let shared = berth_tests::paths::root().join(&name);
    let script = format!(
        "echo n2 > {0} && echo n2 > {1}",
        on_node.display(),
        shared.display()
    );
    let mut sh = cluster.on_second_node("/bin/sh").expect("node 2 runs");
    sh.args(["-c", &script]);
    run_ok(sh);
    let shared_text = std::fs::read_to_string(&shared);
    let _ = std::fs::remove_file(&shared);
    assert!(!on_node.exists(), "node 2's /run is not this host's");
    assert_eq!(shared_text.unwrap(), "n2\n", "/var/tmp is shared");

    // Tasks on node 2 see its /run; tasks on node 1 this host's.
    let path = on_node.display().to_string();
    let multi = cluster.multi_partition().unwrap();
    let seen = srun_ok(&stack, &["-p", multi, "-w", &n2.name, "cat", &path]);
    assert_eq!(seen, "n2\n");
    let out = cluster
        .command("srun")
        .args(["-w", cluster.node(), "cat", &path])
        .output()
        .unwrap();
    assert!(!out.status.success(), "node 1 has no such file");
    let mut rm = cluster.on_second_node("rm").unwrap();
    rm.arg(&path);
    run_ok(rm);
}

#[test]
fn second_node_reaches_the_registries_on_its_loopback() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let stack = stack::services().expect("stack starts");
    let netns = stack.cluster.second_node().unwrap().netns_path();
    let port = stack.plain.config().port;
    let reply = std::thread::spawn(move || {
        let ns = std::fs::File::open(netns).unwrap();
        // SAFETY: switches only this short-lived thread into node 2's network.
        assert_eq!(
            unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
            0
        );
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("relayed");
        conn.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        conn.read_to_string(&mut text).unwrap();
        text
    })
    .join()
    .unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(reply.contains("Docker-Distribution-Api-Version"), "{reply}");
}

#[test]
fn fake_gpus_are_allocated_one_per_task() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let stack = stack::services().expect("stack starts");
    let dir = stack.cluster.gpu_dir();
    for i in 0..berth_tests::fake_gpu::GPUS {
        let meta = std::fs::symlink_metadata(dir.join(format!("nvidia{i}"))).unwrap();
        assert!(meta.file_type().is_char_device());
        assert_eq!(
            meta.rdev(),
            nix::sys::stat::makedev(berth_tests::fake_gpu::NVIDIA_MAJOR, i.into())
        );
    }
    let script = "echo $SLURM_STEP_GPUS $CUDA_VISIBLE_DEVICES $GPU_DEVICE_ORDINAL";
    let text = srun_ok(
        &stack,
        &["--gpus-per-task=1", "-n2", "-l", "sh", "-c", script],
    );
    let mut gpus: Vec<String> = text
        .lines()
        .map(|l| {
            let (_, vars) = l.split_once(": ").expect("labelled line");
            let vals: Vec<&str> = vars.split(' ').collect();
            assert_eq!(vals.len(), 3, "one GPU in each variable: {l:?}");
            assert!(vals.iter().all(|v| *v == vals[0]), "same GPU: {l:?}");
            vals[0].to_string()
        })
        .collect();
    gpus.sort();
    gpus.dedup();
    assert_eq!(gpus.len(), 2, "two tasks, two different GPUs: {text:?}");
}

#[test]
fn second_node_setup_failure_is_one_line_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = isolated_two_node_cluster(&dir, 1);
    let n2 = cfg.second_node.as_mut().unwrap();
    // Interface names have at most 15 bytes: `ip link add` refuses this one.
    n2.host_veth = "berth-name-too-long".into();
    let n2 = n2.clone();
    let cluster = StopOnDrop(Cluster::new(cfg.clone()));
    let err = Cluster::start(cfg).expect_err("the veth cannot be made");
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.starts_with(&format!(
            "node {}: `ip link add berth-name-too-long",
            n2.name
        )),
        "names the node and the command: {msg}"
    );
    assert!(cluster.processes().is_empty());
    assert!(!n2.netns_path().exists(), "the namespace made is removed");
}

#[test]
fn a_foreign_namespace_of_the_same_name_is_reported_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = isolated_two_node_cluster(&dir, 2);
    let n2 = cfg.second_node.clone().unwrap();
    // Declared before the cluster's guard, so dropped after it.
    let _foreign = ForeignNetns::add(&n2.netns);
    let cluster = StopOnDrop(Cluster::new(cfg.clone()));
    let err = Cluster::start(cfg).expect_err("the namespace is taken");
    let kept = n2.netns_path().exists();
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert!(
        msg.contains(&format!("network namespace {} already exists", n2.netns)),
        "{msg}"
    );
    assert!(kept, "another cluster's namespace is not deleted");
    assert!(cluster.processes().is_empty());
}

/// A network namespace that another program made (`ip netns add`), deleted
/// again when the test ends.
#[derive(Debug)]
struct ForeignNetns(String);

impl ForeignNetns {
    fn add(name: &str) -> StopOnDrop<ForeignNetns> {
        let mut add = std::process::Command::new("ip");
        add.args(["netns", "add", name]);
        run_ok(add);
        StopOnDrop(ForeignNetns(name.into()))
    }
}

impl Stop for ForeignNetns {
    type Error = String;
    fn teardown(&self) -> Result<(), String> {
        let out = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

#[test]
fn second_node_etc_hosts_names_both_nodes_and_stays_bindable() {
    let stack = stack::services().expect("stack starts");
    // Every later start (each test calls it) must leave node 2's /etc/hosts on a
    // live file: berth binds it into containers.
    let _again = stack::services().expect("stack is reused");
    let cluster = &stack.cluster;
    let n2 = cluster.second_node().unwrap();
    let script = format!(
        "getent hosts {node1} {node2} && t=$(mktemp) && mount --bind /etc/hosts $t \
         && umount $t && rm $t",
        node1 = cluster.node(),
        node2 = n2.name
    );
    let mut sh = cluster.on_second_node("/bin/sh").unwrap();
    sh.args(["-c", &script]);
    let text = run_ok(sh);
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        [
            &n2.host_addr.to_string(),
            cluster.node(),
            &n2.node_addr.to_string(),
            &n2.name
        ],
        "node 2 resolves node 1 to the host end of the pair and itself to its own"
    );
}
