//! Shared measurement helpers for berth's benchmarks: each binary under
//! `src/bin/` compares berth with a peer on the same machine in one run.

use std::process::Command;
use std::time::{Duration, Instant};

/// The median of `samples` (which it sorts); the default (zero) when empty.
/// Timings are never NaN, so unordered pairs simply count as equal.
pub fn median<T: PartialOrd + Copy + Default>(samples: &mut [T]) -> T {
    samples.sort_unstable_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Runs `cmd` to completion and returns its wall time, or its last error line
/// when it fails (a failed run must never be timed as a fast one).
pub fn try_time(cmd: &mut Command) -> Result<Duration, String> {
    let start = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let took = start.elapsed();
    if out.status.success() {
        return Ok(took);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .unwrap_or("failed")
        .trim()
        .to_string())
}

/// Like [`try_time`], but a failure stops the benchmark.
pub fn time(cmd: &mut Command) -> Duration {
    try_time(cmd).unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
}

/// Runs `cmd` to completion and returns its wall time and the peak resident
/// memory (KiB) of the largest process in its tree, from `wait4`'s rusage.
pub fn time_and_peak(cmd: &mut Command) -> (Duration, u64) {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for the child we just spawned.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let took = start.elapsed();
    assert!(
        rc > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (status {status})"
    );
    (took, usage.ru_maxrss as u64)
}
