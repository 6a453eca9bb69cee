//! Shared measurement helpers for berth's benchmarks: each binary under
//! `src/bin/` compares berth with a peer on the same machine in one run.
