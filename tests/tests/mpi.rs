//! End-to-end tests of the MPI hook through the real cluster, as the job
//! user: `srun --mpi=pmi2 -n2 --container-image=... --container-mpi` runs
//! the image's ping-pong on the host's MPICH (bound over the image's patched
//! copy by etc/hooks.d/30-mpi.json), without `--container-mpi` on the
//! image's own, and an image with another MPICH ABI fails with one clear line.

use std::process::Output;

use berth_tests::e2e::{env, Env};
use berth_tests::image::mpi::{host_library, old_file_name, HOST_MARK, IMAGE_MARK, PINGPONG};
use berth_tests::leaks::assert_clean;

/// `srun --mpi=pmi2 -n2` of the ping-pong in test image `name`, as the job
/// user, with `--container-mpi` when `hook`.
fn pingpong(e: &Env, name: &str, hook: bool) -> Output {
    let image = format!("{}/berth-test/{name}:latest", e.stack.plain.host());
    let mut args = vec!["--mpi=pmi2", "-n2", "--container-image", &image];
    if hook {
        args.push("--container-mpi");
    }
    args.extend([PINGPONG, "20"]);
    e.srun(&args)
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn library_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("library: "))
        .unwrap_or_else(|| panic!("no library line in: {stdout}"))
        .to_string()
}

fn mark(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// The ping-pong of image `mpi` (with `--container-mpi` when `hook`) completes
/// on the MPI library marked `library`; its output.
fn completes_on(e: &Env, hook: bool, library: &[u8]) -> String {
    let out = pingpong(e, "mpi", hook);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "step failed: {stdout}{stderr}");
    assert!(
        library_line(&stdout).starts_with(&mark(library)),
        "{stdout}"
    );
    assert!(stdout.contains("pingpong: done"), "{stdout}");
    stdout
}

#[test]
fn hook_swaps_in_the_host_mpi_and_the_pingpong_completes() {
    let e = env();
    let stdout = completes_on(&e, true, HOST_MARK);
    assert!(
        stdout.contains("rank 0 of 2") && stdout.contains("rank 1 of 2"),
        "{stdout}"
    );
    assert!(stdout.contains("size 1048576 latency_us"), "{stdout}");
    assert_clean();
}

#[test]
fn without_the_hook_the_image_keeps_its_own_mpi() {
    let e = env();
    completes_on(&e, false, IMAGE_MARK);
    assert_clean();
}

#[test]
fn an_incompatible_image_fails_with_one_clear_line() {
    let e = env();
    let out = pingpong(&e, "mpi-old", true);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "step passed: {stdout}");
    assert!(!stdout.contains("library:"), "the program ran: {stdout}");
    // slurmstepd prints the plugin's error as `error: berth: ...`, once per
    // node (the node's first task reports it; the others fail quietly).
    let errors: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.split_once("error: berth: ").map(|(_, msg)| msg))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    // It names both files (whose names carry the versions) and why.
    let host = host_library().unwrap();
    let old = old_file_name(&host).unwrap();
    let line = errors[0];
    assert!(
        line.contains(&host.display().to_string())
            && line.contains(&old)
            && line.contains("not ABI-compatible")
            && line.contains("the major versions differ"),
        "{line}"
    );
    assert_clean();
}
