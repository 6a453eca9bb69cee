//! Shared measurement helpers for berth's benchmarks: each binary under
//! `src/bin/` compares berth with a peer on the same machine in one run.

use std::process::Command;
use std::time::{Duration, Instant};

/// The median of `samples` (which it sorts); zero when empty.
pub fn median(samples: &mut [Duration]) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// Milliseconds with two decimals, for tables.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Runs `cmd` to completion and returns its wall time; fails loudly when the
/// command fails, since a failed run would be timed as a fast one.
pub fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}
