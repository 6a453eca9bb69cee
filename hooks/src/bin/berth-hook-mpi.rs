//! OCI createRuntime hook: replaces the image's MPI with the host's
//! ABI-compatible MPI (see `berth_hooks::mpi` and docs/hooks-mpi.md).

fn main() {
    berth_hooks::run_main("berth-hook-mpi", berth_hooks::mpi::run)
}
