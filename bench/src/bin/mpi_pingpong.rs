//! MPI ping-pong on the harness's real cluster, interleaved in one run: the
//! test ping-pong (tests/mpi/pingpong.c) built on the host and run bare with
//! `srun --mpi=pmi2 -n2`, against the same program in the `mpi` test image
//! run with `--container-image ... --container-mpi`, where the MPI hook binds
//! the host's MPICH over the image's. One node: the two ranks talk through
//! shared memory, so any cost the container adds shows directly.
//!
//! `cargo build --release -p berth -p spank-berth -p berth-hooks -p berth-tests -p berth-bench`,
//! then as root: `target/release/mpi_pingpong [ROUNDS] [ITERATIONS] [OUT.md]`
//! (default 10 rounds of 20000 iterations; 1 MiB messages use a tenth).

use std::fmt::Write as _;
use std::process::Command;

use berth_tests::image::mpi::{compile, HOST_MARK, PINGPONG};
use berth_tests::{paths, stack};

/// One ping-pong run's figures for the sizes compared.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// One-way latency of 8-byte messages, microseconds.
    latency_us: f64,
    /// Bandwidth of 1 MiB messages, MB/s.
    bandwidth_mbs: f64,
}

/// Parses the program's `size N latency_us L bandwidth_mbs B` lines.
fn parse(stdout: &str) -> Option<Run> {
    let field = |size: &str, name: &str| -> Option<f64> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("size {size} ")))?;
        let mut words = line.split_whitespace();
        words.find(|w| *w == name)?;
        words.next()?.parse().ok()
    };
    Some(Run {
        latency_us: field("8", "latency_us")?,
        bandwidth_mbs: field("1048576", "bandwidth_mbs")?,
    })
}

fn run(cmd: &mut Command) -> Run {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    // Both run the host's MPICH: a container that silently kept the image's
    // would not be comparable.
    let mark = format!("library: {}", String::from_utf8_lossy(HOST_MARK));
    assert!(stdout.contains(&mark), "not the host's MPICH: {stdout}");
    parse(&stdout).unwrap_or_else(|| panic!("no figures in: {stdout}"))
}

/// [median, best] of `v`, the best being the lowest when `lower_is_better`.
fn summary(v: Vec<f64>, lower_is_better: bool) -> [f64; 2] {
    let best = if lower_is_better {
        v.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        v.iter().copied().fold(0.0, f64::max)
    };
    let mut v = v;
    [berth_bench::median(&mut v), best]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let iters: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20000);
    let out = args.next();
    let stack = stack::services().expect("the test stack starts (run as root)");
    stack::images(&stack).expect("test images are pushed");
    let image = format!("{}/berth-test/mpi:latest", stack.plain.host());
    let host_bin = compile(&paths::root().join("bench-mpi")).expect("mpicc builds the ping-pong");
    let iters = iters.to_string();
    let srun = |container: bool| {
        let mut cmd = stack.cluster.command("srun");
        cmd.args(["--mpi=pmi2", "-n2"]).current_dir("/tmp");
        if container {
            cmd.args(["--container-image", &image, "--container-mpi", PINGPONG]);
        } else {
            cmd.arg(&host_bin);
        }
        cmd.arg(&iters);
        cmd
    };
    // Pull and convert once: the container is measured from a cached image.
    run(&mut srun(true));
    let (mut host, mut cont) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first so drift on the machine hits both alike.
        for k in 0..2 {
            if (round + k) % 2 == 0 {
                host.push(run(&mut srun(false)));
            } else {
                cont.push(run(&mut srun(true)));
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    // Medians, and the best round of each: on a shared machine other
    // processes preempt the busy-polling ranks now and then, which the best
    // round is least affected by.
    let lat = [&host, &cont].map(|v| summary(v.iter().map(|r| r.latency_us).collect(), true));
    let bw = [&host, &cont].map(|v| summary(v.iter().map(|r| r.bandwidth_mbs).collect(), false));
    let mut report = String::new();
    writeln!(
        report,
        "| figure | host (bare srun) | container + MPI hook | container / host |"
    )
    .unwrap();
    writeln!(report, "|---|---:|---:|---:|").unwrap();
    for (k, which) in ["median", "best round"].iter().enumerate() {
        let rows = [
            (format!("latency 8 B, {which} (us)"), lat, 3),
            (format!("bandwidth 1 MiB, {which} (MB/s)"), bw, 0),
        ];
        for (name, v, digits) in rows {
            let (h, c) = (v[0][k], v[1][k]);
            writeln!(
                report,
                "| {name} | {h:.digits$} | {c:.digits$} | {:.3} |",
                c / h
            )
            .unwrap();
        }
    }
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_programs_output() {
        let out = "library: MPICH Version:\t4.0.2\nrank 0 of 2\nsize 8 latency_us 0.182 bandwidth_mbs 44.1\n\
                   size 1024 latency_us 2.467 bandwidth_mbs 415.1\nsize 1048576 latency_us 95.540 bandwidth_mbs 10975.3\n";
        let r = parse(out).unwrap();
        assert_eq!(r.latency_us, 0.182);
        assert_eq!(r.bandwidth_mbs, 10975.3);
        assert!(parse("rank 0 of 2\n").is_none());
        assert_eq!(berth_bench::median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(summary(vec![3.0, 1.0, 2.0], true), [2.0, 1.0]);
        assert_eq!(summary(vec![3.0, 1.0, 2.0], false), [2.0, 3.0]);
    }
}
