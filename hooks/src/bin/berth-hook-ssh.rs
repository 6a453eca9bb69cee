//! OCI hook (createRuntime and poststop): an SSH server in the container and
//! an `ssh` client to the step's other containers (see `berth_hooks::ssh`
//! and docs/hooks-ssh.md).

fn main() {
    berth_hooks::run_main("berth-hook-ssh", || {
        berth_hooks::ssh::run(&berth_hooks::Container::from_stdin()?)
    })
}
