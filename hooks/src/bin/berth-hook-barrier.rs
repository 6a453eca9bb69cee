//! OCI createRuntime hook: the launch barrier of multi-node Slurm steps (see
//! `berth_hooks::barrier` and docs/hooks-barrier.md).

fn main() {
    berth_hooks::run_main("berth-hook-barrier", || {
        berth_hooks::barrier::run(&berth_hooks::Container::from_stdin()?)
    })
}
