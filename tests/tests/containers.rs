//! End-to-end tests of `srun --container-image` on the real cluster, as the
//! unprivileged job user, with leak checks after each case.
//!
//! The cases share one lock: each ends by checking that nothing of any step is
//! left on the node (state, bundles, mounts, loop devices, runtime processes),
//! which only means something when no other container step runs meanwhile.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use berth_tests::e2e::{env, user_dir, CancelOnDrop};
use berth_tests::leaks::{assert_clean, leftover, STATE_ROOT};
use berth_tests::{paths, proc, site, user};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "step failed: {stderr}");
    stdout
}

#[test]
fn tasks_see_the_image_and_share_one_container() {
    let e = env();
    let out = ok(&e.srun(&["--container-image", &e.image, "cat", "/etc/os-release"]));
    assert!(out.contains("NAME=\"berth-test-busybox\""), "{out}");
    // Host network, host resolver: node names resolve as on the host.
    for f in ["/etc/hosts", "/etc/resolv.conf"] {
        let Ok(host) = std::fs::read_to_string(f) else {
            continue;
        };
        let out = ok(&e.srun(&["--container-image", &e.image, "cat", f]));
        assert_eq!(out, host, "{f}");
    }

    let out = ok(&e.srun(&[
        "-n4",
        "--container-image",
        &e.image,
        "sh",
        "-c",
        "echo $SLURM_PROCID $(readlink /proc/self/ns/mnt)",
    ]));
    let mut lines: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap()
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines.iter().map(|l| l.0.as_str()).collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    let host_ns = std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .display()
        .to_string();
    assert!(
        lines.iter().all(|l| l.1 == lines[0].1),
        "one container per node: {lines:?}"
    );
    assert_ne!(lines[0].1, host_ns, "not the host's mount namespace");
    assert_clean();
}

#[test]
fn image_from_the_environment_variable_is_used() {
    let e = env();
    let mut cmd = e.as_user("srun", &["cat", "/etc/os-release"]);
    cmd.env("BERTH_CONTAINER_IMAGE", &e.image);
    let out = ok(&cmd.output().unwrap());
    assert!(out.contains("NAME=\"berth-test-busybox\""), "{out}");
    assert_clean();
}

#[test]
fn tasks_run_as_the_job_user_without_privileges() {
    let e = env();
    let script = "id -u; id -G; whoami; id -Gn; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; touch /probe 2>&1 || true";
    let out = ok(&e.srun(&["--container-image", &e.image, "sh", "-c", script]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], user::UID.to_string());
    assert!(
        lines[1]
            .split(' ')
            .any(|g| g == user::EXTRA_GID.to_string()),
        "supplementary groups kept: {out}"
    );
    assert_eq!(lines[2], user::NAME, "the user's passwd entry is visible");
    assert!(
        lines[3].split(' ').any(|g| g == user::EXTRA_GROUP),
        "the group names are visible: {out}"
    );
    assert!(
        out.contains("NoNewPrivs:\t1") && out.contains("CapEff:\t0000000000000000"),
        "{out}"
    );
    assert!(
        out.contains("Read-only file system"),
        "the image is read-only: {out}"
    );
    assert_clean();
}

#[test]
fn mounts_workdir_and_environment() {
    let e = env();
    let dir = user_dir(Path::new("/tmp"));
    std::fs::write(dir.path().join("input"), "from the host\n").unwrap();
    let mount = format!("--container-mounts={}:/data:ro", dir.path().display());
    let out = ok(&e.srun(&[
        &mount,
        "--container-workdir=/data",
        "--container-image",
        &e.image,
        "sh",
        "-c",
        "pwd; cat input; touch x 2>&1 || true",
    ]));
    assert!(out.starts_with("/data\nfrom the host\n"), "{out}");
    assert!(out.contains("Read-only file system"), "ro mount: {out}");

    // The image's PATH wins unless --container-env names it.
    let mut cmd = e.as_user(
        "srun",
        &["--container-image", &e.image, "sh", "-c", "echo $PATH"],
    );
    cmd.env("PATH", "/job/bin:/usr/bin:/bin");
    let image_path = ok(&cmd.output().unwrap());
    assert!(!image_path.contains("/job/bin"), "{image_path}");
    let mut cmd = e.as_user(
        "srun",
        &[
            "--container-env=PATH",
            "--container-image",
            &e.image,
            "sh",
            "-c",
            "echo $PATH",
        ],
    );
    cmd.env("PATH", "/job/bin:/usr/bin:/bin");
    assert_eq!(ok(&cmd.output().unwrap()).trim(), "/job/bin:/usr/bin:/bin");
    assert_clean();
}

#[test]
fn named_container_lives_across_steps_and_writable_root() {
    let e = env();
    let image = e.image.clone();
    let steps = format!(
        "srun --container-name=keep --container-writable --container-image={image} sh -c 'echo kept > /tmp/marker' && \
         srun --container-name=keep cat /tmp/marker"
    );
    let out = ok(&e
        .as_user("salloc", &["-n1", "sh", "-c", &steps])
        .output()
        .unwrap());
    assert!(
        out.contains("kept"),
        "the second step, by the name alone, sees the first step's file: {out}"
    );

    // Two steps asking for the same named container at the same moment: one
    // creates it, the other waits and joins it (the same mount namespace).
    let steps = format!(
        "for i in 1 2; do srun -n1 --exact --container-name=race --container-image={image} \
         readlink /proc/self/ns/mnt & done; wait"
    );
    let out = ok(&e
        .as_user("salloc", &["-n2", "sh", "-c", &steps])
        .output()
        .unwrap());
    let namespaces: Vec<&str> = out.lines().filter(|l| l.starts_with("mnt:")).collect();
    assert_eq!(namespaces.len(), 2, "both steps ran: {out}");
    assert_eq!(
        namespaces[0], namespaces[1],
        "one container for both: {out}"
    );

    let out = e.srun(&["--container-image", &image, "sh", "-c", "echo x > /tmp/y"]);
    assert!(
        !out.status.success(),
        "without --container-writable the root is read-only"
    );
    // The job's epilog removed the named container.
    assert_clean();
}

#[test]
fn a_name_alone_needs_the_jobs_container_to_exist() {
    let e = env();
    let out = e.srun(&["--container-name=nope", "true"]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "no container named nope: {err}");
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("does not exist on this node"))
        .collect();
    assert_eq!(ours.len(), 1, "one clear line: {err}");
    assert_clean();
}

#[test]
fn sbatch_script_runs_in_the_image_and_exit_codes_propagate() {
    let e = env();
    let dir = user_dir(Path::new("/tmp"));
    let script = dir.path().join("job.sh");
    let output = dir.path().join("job.out");
    std::fs::write(&script, format!("#!/bin/sh\n#SBATCH --container-image={}\n#SBATCH --output={}\ngrep ^NAME= /etc/os-release\nid -un\n", e.image, output.display())).unwrap();
    let out = e
        .as_user("sbatch", &["--wait", script.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let printed = std::fs::read_to_string(&output).unwrap();
    assert_eq!(
        printed,
        format!("NAME=\"berth-test-busybox\"\n{}\n", user::NAME)
    );

    let out = e.srun(&["--container-image", &e.image, "sh", "-c", "exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the task's exit code: {}",
        text(&out).1
    );
    assert_clean();
}

#[test]
fn the_environment_is_the_same_under_srun_and_sbatch() {
    let e = env();
    let dir = user_dir(Path::new("/tmp"));
    // What the tasks see of the variables the rules are about.
    let probe = "echo PATH=$PATH; echo JOBONLY=$JOBONLY; \
                 test -n \"$SLURM_JOB_ID\" && echo SLURM_JOB_ID=set";
    let job_env = [
        ("PATH", "/job/bin:/usr/bin:/bin"),
        ("JOBONLY", "from-the-job"),
    ];
    for extra in [None, Some("--container-env=PATH")] {
        let mut args = vec!["--container-image", &e.image];
        args.extend(extra);
        args.extend(["sh", "-c", probe]);
        let mut cmd = e.as_user("srun", &args);
        cmd.envs(job_env);
        let under_srun = ok(&cmd.output().unwrap());

        let script = dir.path().join("env.sh");
        let output = dir.path().join("env.out");
        let directives = std::iter::once(format!("--container-image={}", e.image))
            .chain(extra.map(String::from))
            .chain(std::iter::once(format!("--output={}", output.display())))
            .map(|d| format!("#SBATCH {d}\n"))
            .collect::<String>();
        std::fs::write(&script, format!("#!/bin/sh\n{directives}{probe}\n")).unwrap();
        let mut cmd = e.as_user("sbatch", &["--wait", script.to_str().unwrap()]);
        cmd.envs(job_env);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        let under_sbatch = std::fs::read_to_string(&output).unwrap();

        assert_eq!(under_srun, under_sbatch, "with {extra:?}");
        let want_path = if extra.is_some() {
            "PATH=/job/bin:/usr/bin:/bin"
        } else {
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        };
        assert_eq!(
            under_srun,
            format!("{want_path}\nJOBONLY=from-the-job\nSLURM_JOB_ID=set\n"),
            "with {extra:?}"
        );
    }
    assert_clean();
}

#[test]
fn a_step_killed_at_its_time_limit_leaves_nothing() {
    let e = env();
    // Slurm's time limits are in minutes: this case takes about one.
    let out = e.srun(&["--time=1", "--container-image", &e.image, "sleep", "600"]);
    assert!(!out.status.success(), "the step outlived its limit");
    assert!(text(&out).1.contains("TIME LIMIT"), "{}", text(&out).1);
    assert_clean();
}

/// The busybox image with an ENTRYPOINT script, pushed as
/// `berth-test/entrypoint:TAG`: it records that it ran (as whom, with which
/// command) in the container's /tmp, fails when its image says so, and ends
/// with the usual `exec "$@"`.
fn entrypoint_image(e: &berth_tests::e2e::Env, tag: &str, fail: bool) -> String {
    use berth_tests::image::{build_image, busybox, push, Entry, Layer};
    let mut spec = busybox::spec().unwrap();
    spec.name = "entrypoint".into();
    let script = format!(
        "#!/bin/sh\necho \"ran as $(id -u) caps $(grep CapEff /proc/self/status | cut -f2) with $*\" >> /tmp/entrypoint-ran\n{}exec \"$@\"\n",
        if fail {
            "echo 'no licence server configured' >&2; exit 3\n"
        } else {
            ""
        }
    );
    spec.layers
        .push(Layer::new().with(Entry::file("/entrypoint.sh", script, 0o755)));
    spec.entrypoint = Some(vec!["/entrypoint.sh".into()]);
    let dir = tempfile::tempdir().unwrap();
    let built = build_image(&spec, dir.path()).unwrap();
    // The tag names the content: a store that pulled an older build of this
    // test image under the same name would otherwise keep using it.
    let tag = format!("{tag}-{}", &built.config_digest["sha256:".len()..][..12]);
    push(
        &built.layout_dir,
        &built.tag,
        &e.stack.plain.push_target(),
        &built.repository(),
        &tag,
    )
    .unwrap();
    format!("{}/{}:{tag}", e.stack.plain.host(), built.repository())
}

#[test]
fn the_entrypoint_runs_once_per_container_before_the_tasks() {
    let e = env();
    let image = entrypoint_image(&e, "ok", false);
    // Without the option the entrypoint does not run.
    let out = ok(&e.srun(&[
        "--container-image",
        &image,
        "sh",
        "-c",
        "cat /tmp/entrypoint-ran 2>/dev/null || echo none",
    ]));
    assert_eq!(out.trim(), "none", "{out}");
    // With it, it ran as the job user before both tasks, which see its work
    // (in the writable root: the image is read-only otherwise).
    let out = ok(&e.srun(&[
        "-n2",
        "--container-writable",
        "--container-entrypoint",
        "--container-image",
        &image,
        "cat",
        "/tmp/entrypoint-ran",
    ]));
    // As the job user, with no capability (it runs in the host's pid
    // namespace); once: the script appends, so each task reads exactly one line.
    let want = format!("ran as {} caps 0000000000000000 with true\n", user::UID);
    assert_eq!(out, format!("{want}{want}"), "{out}");
    // A failing entrypoint fails the step with its last words, once.
    let bad = entrypoint_image(&e, "fails", true);
    let out = e.srun(&[
        "-n2",
        "--container-entrypoint",
        "--container-image",
        &bad,
        "true",
    ]);
    assert!(!out.status.success());
    let errors: Vec<String> = text(&out)
        .1
        .lines()
        .filter(|l| l.contains("error: berth:"))
        .map(String::from)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("/entrypoint.sh")
            && errors[0].contains("status 3")
            && errors[0].contains("no licence server configured"),
        "{errors:?}"
    );
    assert_clean();
}

#[test]
fn scancel_of_a_running_containerized_step_cleans_up() {
    let e = env();
    let srun = e
        .as_user(
            "srun",
            &[
                "--job-name=berth-cancel",
                "--container-image",
                &e.image,
                "sleep",
                "300",
            ],
        )
        .spawn()
        .unwrap();
    let mut job = CancelOnDrop::new(&e, "berth-cancel", Some(srun));
    let started = proc::wait_until(Duration::from_secs(30), || !leftover(STATE_ROOT).is_empty());
    assert!(started, "the step's container exists");
    let cancel = e
        .stack
        .cluster
        .command("scancel")
        .args(["--name", "berth-cancel"])
        .status()
        .unwrap();
    assert!(cancel.success());
    let status = job.child.as_mut().unwrap().wait().unwrap();
    assert!(!status.success(), "a cancelled step fails");
    assert_clean();
}

#[test]
fn bad_requests_fail_with_one_line_and_leave_nothing() {
    let e = env();
    let cases = [
        (
            format!(
                "--container-image={}/berth-test/no-such-image:1",
                e.stack.plain.host()
            ),
            "no-such-image",
        ),
        (
            "--container-image=127.0.0.1:1/berth-test/busybox:latest".to_string(),
            "127.0.0.1:1",
        ),
    ];
    for (arg, named) in &cases {
        let out = e.srun(&[arg, "true"]);
        let (_, err) = text(&out);
        assert!(!out.status.success(), "{arg} must fail");
        let ours: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("berth: container:"))
            .collect();
        assert_eq!(ours.len(), 1, "one line from berth: {err}");
        assert!(ours[0].contains(named), "names the image: {}", ours[0]);
    }
    let out = e.srun(&[
        "--container-mounts=/tmp:/etc/evil",
        "--container-image",
        &e.image,
        "true",
    ]);
    let (_, err) = text(&out);
    assert!(!out.status.success(), "a disallowed destination fails");
    assert!(
        err.contains("berth: container:") && err.contains("/etc"),
        "{err}"
    );
    assert!(e.stack.cluster.is_running(), "slurmd stays up");
    assert_clean();
}

/// Live processes whose command line (arguments joined by spaces) starts with `prefix`.
fn pids_with_cmdline(prefix: &str) -> Vec<i32> {
    proc::with_cmdline(|c| c.starts_with(prefix))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

#[test]
fn leftovers_of_a_killed_slurmstepd_are_removed_by_gc() {
    let e = env();
    let srun = e
        .as_user(
            "srun",
            &[
                "--job-name=berth-killed",
                "--container-image",
                &e.image,
                "sleep",
                "301",
            ],
        )
        // srun outlives the killed runuser until scancel: keep it off our pipes.
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job = CancelOnDrop::new(&e, "berth-killed", Some(srun));
    let state = || leftover(STATE_ROOT);
    assert!(proc::wait_until(Duration::from_secs(30), || !state()
        .is_empty()
        && !pids_with_cmdline("/usr/bin/sleep 301").is_empty()));
    let id = state()[0].clone();
    let step = id.trim_start_matches("slurm-").to_string();
    let stepd = pids_with_cmdline(&format!("slurmstepd: [{step}]"));
    assert!(!stepd.is_empty(), "the step's slurmstepd runs");
    for pid in stepd
        .iter()
        .chain(pids_with_cmdline("/usr/bin/sleep 301").iter())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // While the job lives its epilog has not run: the container is left behind.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        state().contains(&id),
        "killing slurmstepd leaves the container behind"
    );

    let gc = Command::new(paths::berth_bin())
        .env("BERTH_CONFIG", site::path())
        .arg("gc")
        .output()
        .unwrap();
    assert!(gc.status.success(), "{}", text(&gc).1);
    assert!(
        text(&gc).0.contains("1 stale containers"),
        "{}",
        text(&gc).0
    );
    assert!(!state().contains(&id), "gc removed it");
    drop(job);
    assert_clean();
}
