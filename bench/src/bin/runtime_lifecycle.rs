//! create + start + wait + delete of `/bin/true` on one bundle: berth vs
//! runc (Debian package) interleaved round by round, plus the floor
//! (`unshare -m` + `chroot` + `/bin/true`). Reports medians, ratios and the
//! peak RSS of the runtime processes (wait4 ru_maxrss), as a markdown table.
//!
//! Usage: runtime_lifecycle [ROUNDS] [BERTH_BINARY] [OUTPUT.md] [runc|hpc]
//! Must run as root (runc and the floor need CAP_SYS_ADMIN).
//!
//! `BERTH_BASELINE=/path/to/another/berth` adds that build as a fourth
//! contender in the same interleaved rounds: an A/B of two builds that the
//! machine's drift between separate runs cannot blur.

use berth_bench::{median, ms};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run a command to completion with null stdio; returns (wall time, ru_maxrss KiB).
fn run(cmd: &mut Command) -> (Duration, i64) {
    let quiet = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A failing runtime says why (a successful one prints nothing).
        .stderr(Stdio::inherit());
    let (t, peak) = berth_bench::time_and_peak(quiet);
    (t, peak as i64)
}

/// Wall time of each phase of one lifecycle.
#[derive(Default, Clone, Copy)]
struct Phases([Duration; 4]);

/// One lifecycle with an OCI runtime; returns (wall, peak rss, phases).
fn lifecycle(bin: &Path, root: &Path, bundle: &Path, id: &str) -> (Duration, i64, Phases) {
    let pidfile = bundle.join(format!("{id}.pid"));
    let t = Instant::now();
    let (c, r1) = run(Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["create", "--bundle"])
        .arg(bundle)
        .arg("--pid-file")
        .arg(&pidfile)
        .arg(id));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (s, r2) = run(Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["start", id]));
    // We are a subreaper, so the container's init is re-parented to us.
    let w = Instant::now();
    let mut st = 0;
    // SAFETY: waitpid on a (re-parented) child.
    let reaped = unsafe { libc::waitpid(pid, &mut st, 0) };
    assert_eq!(reaped, pid, "the container's init was not ours to reap");
    let w = w.elapsed();
    let (d, r3) = run(Command::new(bin)
        .arg("--root")
        .arg(root)
        .args(["delete", id]));
    (t.elapsed(), r1.max(r2).max(r3), Phases([c, s, w, d]))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let berth = PathBuf::from(
        args.get(2)
            .cloned()
            .unwrap_or_else(|| "target/dist/berth".into()),
    );
    let berth = std::fs::canonicalize(&berth)
        .expect("berth binary (build with scripts/build-release --berth-only)");
    let out = args.get(3).cloned();
    // `runc`: the 5 namespaces of `runc spec`; `hpc`: mount and pid only, on
    // the host's network and IPC, as `berth run IMAGE` makes them.
    let hpc = match args.get(4).map(String::as_str) {
        None | Some("runc") => false,
        Some("hpc") => true,
        Some(other) => panic!("shape {other:?}: use runc or hpc"),
    };
    let runc = PathBuf::from("/usr/sbin/runc");

    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = std::env::temp_dir().join(format!("berth-bench-{}", std::process::id()));
    // State roots live on tmpfs, as /run does on any systemd host, for both
    // runtimes alike; the bundle stays on the ordinary filesystem.
    let state = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        dir.clone()
    }
    .join(format!("berth-bench-state-{}", std::process::id()));
    let cleanup = Cleanup {
        dir: dir.clone(),
        state: state.clone(),
        runtimes: [
            (berth.clone(), state.join("berth")),
            (runc.clone(), state.join("runc")),
        ],
    };
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
    // `berth spec`'s runc-shaped config, running /bin/true: both runtimes
    // read the same file.
    let spec = Command::new(&berth)
        .args(["spec", "--bundle"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(spec.success(), "berth spec failed");
    let config = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    c["process"]["args"] = serde_json::json!(["/bin/true"]);
    if hpc {
        // No UTS namespace, so no hostname (`berth spec` writes runc's).
        c["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}, {"type": "mount"}]);
        c.as_object_mut().unwrap().remove("hostname");
    } else {
        c["hostname"] = "bench".into();
    }
    std::fs::write(&config, c.to_string()).unwrap();

    let baseline = std::env::var_os("BERTH_BASELINE")
        .map(|b| std::fs::canonicalize(&b).unwrap_or_else(|e| panic!("BERTH_BASELINE {b:?}: {e}")));
    let mut ta = Vec::new();
    let orders = permutations(if baseline.is_some() { 4 } else { 3 });
    let (mut tb, mut tr, mut tf) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pb, mut pr): (Vec<Phases>, Vec<Phases>) = (Vec::new(), Vec::new());
    let (mut rb, mut rr) = (0i64, 0i64);
    // Warm-up (page cache, binaries) before measuring.
    lifecycle(&berth, &state.join("berth"), &dir, "warm-b");
    lifecycle(&runc, &state.join("runc"), &dir, "warm-r");
    for i in 0..rounds {
        // Every order in turn, so no contender always runs first, nor always
        // right after the same other one (a cyclic rotation made the
        // baseline always follow the floor, which cost it ~4%).
        for &k in &orders[i % orders.len()] {
            match k {
                3 => {
                    let a = baseline
                        .as_ref()
                        .expect("4 contenders only with a baseline");
                    let (t, _, _) = lifecycle(a, &state.join("berth"), &dir, &format!("a{i}"));
                    ta.push(t);
                }
                0 => {
                    let (t, r, p) = lifecycle(&berth, &state.join("berth"), &dir, &format!("b{i}"));
                    tb.push(t);
                    pb.push(p);
                    rb = rb.max(r);
                }
                1 => {
                    let (t, r, p) = lifecycle(&runc, &state.join("runc"), &dir, &format!("r{i}"));
                    tr.push(t);
                    pr.push(p);
                    rr = rr.max(r);
                }
                2 => {
                    let (t, _) = run(Command::new("unshare")
                        .arg("-m")
                        .arg("chroot")
                        .arg(&rootfs)
                        .arg("/bin/true"));
                    tf.push(t);
                }
                _ => unreachable!(),
            }
        }
    }
    let (mb, mr, mf) = (median(&mut tb), median(&mut tr), median(&mut tf));
    let table = format!(
        "| runtime | median wall (ms) | vs runc | vs floor | peak RSS (KiB) |\n\
         |---|---:|---:|---:|---:|\n\
         | berth | {} | {:.2}x | {:.2}x | {} |\n\
         | runc {} | {} | 1.00x | {:.2}x | {} |\n\
         | floor (unshare -m + chroot + /bin/true) | {} | {:.2}x | 1.00x | - |\n\n\
         {rounds} interleaved rounds, create+start+wait+delete of /bin/true on one bundle, state roots on tmpfs \
         ({}; read-only root; default mounts, masked and read-only paths).\n",
        ms(mb),
        mb.as_secs_f64() / mr.as_secs_f64(),
        mb.as_secs_f64() / mf.as_secs_f64(),
        rb,
        runc_version(),
        ms(mr),
        mr.as_secs_f64() / mf.as_secs_f64(),
        rr,
        ms(mf),
        mf.as_secs_f64() / mr.as_secs_f64(),
        if hpc {
            "pid and mount namespaces, host network, IPC and hostname"
        } else {
            "pid, net, ipc, uts, mount namespaces"
        },
    );
    let phase = |v: &[Phases], k: usize| {
        let mut x: Vec<Duration> = v.iter().map(|p| p.0[k]).collect();
        ms(median(&mut x))
    };
    let table = format!(
        "{table}\nMedian per phase (ms): create / start / wait / delete\n\n\
         | runtime | create | start | wait | delete |\n|---|---:|---:|---:|---:|\n\
         | berth | {} | {} | {} | {} |\n| runc | {} | {} | {} | {} |\n",
        phase(&pb, 0),
        phase(&pb, 1),
        phase(&pb, 2),
        phase(&pb, 3),
        phase(&pr, 0),
        phase(&pr, 1),
        phase(&pr, 2),
        phase(&pr, 3),
    );
    let table = match &baseline {
        Some(a) => {
            let ma = median(&mut ta);
            format!(
                "{table}\nBaseline {}: {} ms, {:.2}x floor; this build / baseline: {:.3}\n",
                a.display(),
                ms(ma),
                ma.as_secs_f64() / mf.as_secs_f64(),
                mb.as_secs_f64() / ma.as_secs_f64(),
            )
        }
        None => table,
    };
    print!("{table}");
    if let Some(o) = out {
        std::fs::write(o, &table).unwrap();
    }
    drop(cleanup);
}

/// Removes the bundle and both state roots, deleting (`--force`) any
/// container a failed round left in them, also when the benchmark panics.
struct Cleanup {
    dir: PathBuf,
    state: PathBuf,
    runtimes: [(PathBuf, PathBuf); 2],
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (bin, root) in &self.runtimes {
            for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
                let _ = Command::new(bin)
                    .arg("--root")
                    .arg(root)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn runc_version() -> String {
    let o = Command::new("/usr/sbin/runc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    o.lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("runc version ")
        .to_string()
}

/// All orders of 0..n.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for p in permutations(n - 1) {
        for at in 0..=p.len() {
            let mut q = p.clone();
            q.insert(at, n - 1);
            all.push(q);
        }
    }
    all
}
