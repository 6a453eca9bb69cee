//! Step launch cost of `srun --container-image` against bare-metal `srun` on the
//! harness's real cluster, interleaved in one run, and how it scales with the
//! number of tasks per node (it should not: the container is made once per node).
//!
//! `cargo build --release -p berth -p spank-berth -p berth-tests -p berth-bench`, then as root:
//! `target/release/step_launch [ROUNDS] [OUT.md]` (default 20 rounds).

use std::fmt::Write as _;
use std::process::Command;

use berth_bench::{median, ms, time};
use berth_tests::{stack, user};

fn srun(stack: &stack::Stack, ntasks: u32, image: Option<&str>) -> Command {
    let mut cmd = stack.cluster.command("/usr/sbin/runuser");
    cmd.args([
        "-u",
        user::NAME,
        "--",
        "srun",
        "--overcommit",
        &format!("-n{ntasks}"),
    ]);
    if let Some(img) = image {
        cmd.arg(format!("--container-image={img}"));
    }
    cmd.arg("true").current_dir("/tmp");
    cmd
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let out = args.next();
    let stack = stack::services().expect("the test stack starts (run as root)");
    stack::images(&stack).expect("test images are pushed");
    let image = format!("{}/berth-test/busybox:latest", stack.plain.host());
    // Pull and convert once: the benchmark measures launches from a cached image.
    time(&mut srun(&stack, 1, Some(&image)));

    let mut report = String::new();
    writeln!(report, "| tasks per node | bare `srun` median (ms) | `srun --container-image` median (ms) | added per step (ms) |").unwrap();
    writeln!(report, "|---:|---:|---:|---:|").unwrap();
    for ntasks in [1, 2, 4, 8, 16, 32] {
        let (mut bare, mut boxed) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            // Alternate which goes first so drift on the machine hits both alike.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for with_image in order {
                let took = time(&mut srun(
                    &stack,
                    ntasks,
                    with_image.then_some(image.as_str()),
                ));
                if with_image {
                    boxed.push(took)
                } else {
                    bare.push(took)
                }
            }
        }
        let (b, c) = (median(&mut bare), median(&mut boxed));
        let added = c.saturating_sub(b);
        writeln!(
            report,
            "| {ntasks} | {} | {} | {} |",
            ms(b),
            ms(c),
            ms(added)
        )
        .unwrap();
        eprintln!(
            "{ntasks} tasks: bare {} ms, container {} ms, added {} ms",
            ms(b),
            ms(c),
            ms(added)
        );
    }
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}
