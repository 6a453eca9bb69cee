//! Image import: berth against the Sarus pipeline (`skopeo copy` + `umoci
//! unpack` + `mksquashfs`, all Debian packages) on the same machine in one run,
//! from the harness's local registry and from a `docker save` archive, with the
//! `large` test image (>= 300 MB, several layers). Each round starts from empty
//! stores; rounds alternate which tool goes first.
//!
//! `cargo build --release -p berth -p berth-tests -p berth-bench`, then as root:
//! `target/release/import [ROUNDS] [OUT.md]` (default 3 rounds).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_bench::{median, ms, time_and_peak};
use berth_tests::{paths, site, stack};

/// One pipeline run: total wall time and the largest peak RSS of its steps.
///
/// Starts with an untimed `sync`, so the dirty pages of the previous run (up to
/// a gigabyte for the Sarus pipeline) are not flushed during this one.
fn pipeline(steps: Vec<Command>) -> (Duration, u64) {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    steps
        .into_iter()
        .fold((Duration::ZERO, 0), |(t, m), mut c| {
            let (dt, dm) = time_and_peak(c.stdout(std::process::Stdio::null()));
            (t + dt, m.max(dm))
        })
}

fn berth(work: &Path, source: &str, load: bool) -> Vec<Command> {
    let mut cmd = Command::new(paths::berth_bin());
    cmd.env("BERTH_CONFIG", site::path())
        .arg(if load { "load" } else { "pull" });
    cmd.args(["--quiet", "--store"])
        .arg(work.join("berth-store"))
        .arg(source);
    vec![cmd]
}

fn sarus(work: &Path, source: &str) -> Vec<Command> {
    let oci = format!("oci:{}:img", work.join("oci").display());
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "--src-tls-verify=false", source, &oci]);
    let mut unpack = Command::new("umoci");
    unpack
        .args([
            "unpack",
            "--image",
            &format!("{}:img", work.join("oci").display()),
        ])
        .arg(work.join("bundle"));
    let mut squash = Command::new("mksquashfs");
    squash
        .arg(work.join("bundle/rootfs"))
        .arg(work.join("image.sqsh"))
        .args(["-noappend", "-quiet"]);
    vec![copy, unpack, squash]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let out = args.next();
    let stack = stack::services().expect("the test stack starts (run as root)");
    let catalog = stack::images(&stack).expect("test images are pushed");
    let large = &catalog.large;
    let reference = format!(
        "{}/{}:{}",
        stack.plain.host(),
        large.repository(),
        large.tag
    );
    let archive = large.docker_archive.display().to_string();

    let mut report = String::from("| source | pipeline | median wall (s) | peak RSS (MiB) | berth vs Sarus |\n|---|---|---:|---:|---:|\n");
    let sources = [
        (
            "registry",
            format!("docker://{reference}"),
            reference.clone(),
            false,
        ),
        (
            "archive",
            format!("docker-archive:{archive}"),
            archive.clone(),
            true,
        ),
    ];
    for (label, sarus_src, berth_src, load) in sources {
        let (mut bt, mut st, mut bm, mut sm) = (vec![], vec![], 0, 0);
        for round in 0..rounds {
            for berth_first in if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            } {
                let work = tempfile::tempdir_in("/var/tmp").unwrap();
                if berth_first {
                    let (t, m) = pipeline(berth(work.path(), &berth_src, load));
                    bt.push(t);
                    bm = bm.max(m);
                } else {
                    let (t, m) = pipeline(sarus(work.path(), &sarus_src));
                    st.push(t);
                    sm = sm.max(m);
                }
            }
        }
        let (b, s) = (median(&mut bt), median(&mut st));
        let ratio = b.as_secs_f64() / s.as_secs_f64();
        let sec = |d: Duration| format!("{:.2}", d.as_secs_f64());
        writeln!(
            report,
            "| {label} | berth {} | {} | {} | {ratio:.2}x |",
            if load { "load" } else { "pull" },
            sec(b),
            bm / 1024
        )
        .unwrap();
        writeln!(
            report,
            "| {label} | skopeo copy + umoci unpack + mksquashfs | {} | {} | 1.00x |",
            sec(s),
            sm / 1024
        )
        .unwrap();
        eprintln!("{label}: berth {} ms, sarus {} ms", ms(b), ms(s));
    }
    // Cached image to a running /bin/true: convert once, then time `berth run`
    // with --pull never (no network) from the store.
    let work = tempfile::tempdir_in("/var/tmp").unwrap();
    let store = work.path().join("berth-store");
    pipeline(berth(work.path(), &reference, false));
    let mut starts: Vec<Duration> = (0..50)
        .map(|_| {
            let mut run = Command::new(paths::berth_bin());
            run.env("BERTH_CONFIG", site::path())
                .args(["run", "--quiet", "--pull", "never", "--store"])
                .arg(&store)
                .args([reference.as_str(), "/bin/true"]);
            berth_bench::time(&mut run)
        })
        .collect();
    writeln!(
        report,
        "\nCached image to a running `/bin/true` (`berth run --pull never`, 50 runs): median {} ms",
        ms(median(&mut starts))
    )
    .unwrap();
    print!("{report}");
    if let Some(path) = out {
        std::fs::write(&path, &report).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
    }
}
