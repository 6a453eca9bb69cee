//! End-to-end tests of the test harness itself: a real Slurm cluster, real
//! registries, real pushes. Run as root (CI does).

use std::net::TcpListener;
use std::time::Duration;

use berth_tests::cluster::{Cluster, ClusterConfig, ClusterError};
use berth_tests::daemon::DaemonError;
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

/// Stops an isolated cluster when the test ends, even when an assertion fails.
struct StopOnDrop(Cluster);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.stop();
    }
}

/// Runs `srun ARGS` on the shared cluster; returns its output, failing the test
/// with srun's error when the step fails.
fn srun_ok(stack: &stack::Stack, args: &[&str]) -> String {
    let out = stack
        .cluster
        .command("srun")
        .args(args)
        .output()
        .expect("srun runs");
    assert!(
        out.status.success(),
        "srun failed: {}",
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
        cluster.0.processes().is_empty(),
        "munged was stopped again: {:?}",
        cluster.0.processes()
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
    assert!(cluster.0.processes().is_empty());
}

#[test]
fn teardown_leaves_no_daemon_or_step_behind() {
    let dir = tempfile::tempdir().unwrap();
    let guard =
        StopOnDrop(Cluster::start(isolated_cluster(&dir)).expect("isolated cluster starts"));
    let cluster = &guard.0;
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
    let reg = Registry::start(cfg.clone()).expect("isolated registry starts");
    Client::new(&reg.push_target())
        .unwrap()
        .ping()
        .expect("isolated registry answers over TLS");
    let other = RegistryConfig {
        dir: dir.path().join("other"),
        ..cfg
    };
    let err = Registry::start(other).expect_err("same port twice");
    assert!(matches!(err, RegistryError::PortTaken { .. }), "{err}");
    assert!(!err.to_string().contains('\n'));
    reg.stop().expect("teardown");
    assert!(reg.processes().is_empty());
}
