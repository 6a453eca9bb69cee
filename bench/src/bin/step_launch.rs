//! Step launch cost on the harness's real cluster, interleaved in one run:
//! bare-metal `srun`, `srun --container-image` (berth: one container per node),
//! and Slurm's native `srun --container=BUNDLE` with runc from `oci.conf` (one
//! container per task), for 1 to 32 tasks per node (oversubscribed).
//!
//! `cargo build --release -p berth -p spank-berth -p berth-tests -p berth-bench`, then as root:
//! `target/release/step_launch [ROUNDS] [OUT.md]` (default 20 rounds). All steps
//! run as root so runc needs no rootless set-up; the image is the same busybox
//! image for both container variants (umoci unpacks it into the native bundle).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use berth_bench::{median, ms, time, try_time};
use berth_tests::{paths, stack};

/// Slurm's OCI container support driving runc with `runc run` (the
/// create/start form leaves the step hanging on Slurm 22.05 here).
const OCI_CONF: &str = "RunTimeQuery=\"runc --root=/run/berth-bench-runc state %n.%u.%j.%s.%t\"\n\
RunTimeRun=\"runc --root=/run/berth-bench-runc run %n.%u.%j.%s.%t -b %b\"\n\
RunTimeKill=\"runc --root=/run/berth-bench-runc kill -a %n.%u.%j.%s.%t\"\n\
RunTimeDelete=\"runc --root=/run/berth-bench-runc delete --force %n.%u.%j.%s.%t\"\n";

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Bare,
    Berth,
    Native,
}

fn srun(stack: &stack::Stack, ntasks: u32, v: Variant, image: &str, bundle: &Path) -> Command {
    let mut cmd = stack.cluster.command("srun");
    cmd.args(["--overcommit", &format!("-n{ntasks}")]);
    match v {
        Variant::Bare => {}
        Variant::Berth => {
            cmd.arg(format!("--container-image={image}"));
        }
        Variant::Native => {
            cmd.arg(format!("--container={}", bundle.display()));
        }
    }
    cmd.arg("true").current_dir("/tmp");
    cmd
}

/// Writes oci.conf next to slurm.conf and unpacks the busybox image as a bundle.
fn native_setup(stack: &stack::Stack, layout: &Path) -> std::path::PathBuf {
    let conf_dir = stack.cluster.conf_path().parent().unwrap().to_path_buf();
    std::fs::write(conf_dir.join("oci.conf"), OCI_CONF).unwrap();
    let bundle = paths::root().join("native-bundle");
    let _ = std::fs::remove_dir_all(&bundle);
    time(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle),
    );
    bundle
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let out = args.next();
    let stack = stack::services().expect("the test stack starts (run as root)");
    let catalog = stack::images(&stack).expect("test images are pushed");
    let image = format!("{}/berth-test/busybox:latest", stack.plain.host());
    let bundle = native_setup(&stack, &catalog.busybox.layout_dir);
    // Pull and convert once: berth is measured from a cached image.
    time(&mut srun(&stack, 1, Variant::Berth, &image, &bundle));

    let mut report = String::new();
    writeln!(report, "| tasks per node | bare `srun` (ms) | berth `--container-image` (ms) | berth added (ms) | native `--container` + runc (ms) | native added (ms) |").unwrap();
    writeln!(report, "|---:|---:|---:|---:|---:|---:|").unwrap();
    for ntasks in [1, 2, 4, 8, 16, 32] {
        let mut samples = [vec![], vec![], vec![]];
        let variants = [Variant::Bare, Variant::Berth, Variant::Native];
        let mut native_error = None;
        for round in 0..rounds {
            // Rotate the order so drift on the machine hits every variant alike.
            for k in 0..3 {
                let i = (round + k) % 3;
                if variants[i] == Variant::Native && native_error.is_some() {
                    continue;
                }
                match try_time(&mut srun(&stack, ntasks, variants[i], &image, &bundle)) {
                    Ok(t) => samples[i].push(t),
                    // Slurm's own container support may fail where berth does not:
                    // record what it said instead of stopping the comparison.
                    Err(e) if variants[i] == Variant::Native => native_error = Some(e),
                    Err(e) => panic!("{ntasks} tasks: step failed: {e}"),
                }
            }
        }
        let [b, c, n] = samples.map(|mut s| median(&mut s));
        let native = match &native_error {
            Some(e) => format!("fails: `{e}` | - "),
            None => format!("{} | {}", ms(n), ms(n.saturating_sub(b))),
        };
        let row = format!(
            "| {ntasks} | {} | {} | {} | {native} |",
            ms(b),
            ms(c),
            ms(c.saturating_sub(b))
        );
        eprintln!("{row}");
        writeln!(report, "{row}").unwrap();
    }
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}
