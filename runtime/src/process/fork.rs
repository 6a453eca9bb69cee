//! clone(2) without a new stack: fork semantics plus namespace flags, so
//! one syscall creates the init inside all new namespaces at once (no
//! re-exec of the binary, no intermediate process on the common path).

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Result of [`clone`] as seen by each side.
pub enum Forked {
    /// We are the new process.
    Child,
    /// We are the caller; the new process has this pid.
    Parent(Pid),
}

/// Fork with extra clone flags (namespaces, CLONE_PARENT).
///
/// The runtime is single-threaded when it calls this, which is what makes
/// running arbitrary Rust code in the child sound.
pub fn clone(flags: CloneFlags) -> nix::Result<Forked> {
    // SAFETY: with a null stack, clone behaves like fork: the child gets a
    // copy-on-write copy of our stack. The caller guarantees no other thread
    // holds locks (single-threaded runtime).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags.bits() as libc::c_long) | libc::SIGCHLD as libc::c_long,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match r {
        -1 => Err(nix::Error::last()),
        0 => Ok(Forked::Child),
        p => Ok(Forked::Parent(Pid::from_raw(p as i32))),
    }
}

/// Runs the body of a forked child. A panic must not unwind out of it: it would
/// run the parent's cleanup guards (state, cgroups) inside the child. The child
/// exits with 127 instead, which the parent reports as a failed init.
pub fn in_child(body: impl FnOnce() -> std::convert::Infallible) -> ! {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    exit_child(127)
}

/// Leave the child without running destructors or atexit handlers of the
/// parent's state.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit is always safe to call.
    unsafe { libc::_exit(code) }
}

/// Runs `body` in a forked child process and asserts it returned true, for
/// unit tests of process-wide state (signals, timers) that the test
/// harness's other threads would otherwise share. A child still running
/// after 10 s is killed and fails the test.
#[cfg(test)]
pub(crate) fn assert_in_child(body: impl FnOnce() -> bool) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use std::time::{Duration, Instant};
    // SAFETY: the child runs `body`, then leaves with _exit.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            exit_child(if ok.unwrap_or(false) { 0 } else { 1 })
        }
        nix::unistd::ForkResult::Parent { child } => {
            let deadline = Instant::now() + Duration::from_secs(10);
            let st = loop {
                match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
                    WaitStatus::StillAlive if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    WaitStatus::StillAlive => {
                        let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
                        let _ = waitpid(child, None);
                        panic!("the child was still running after 10 s");
                    }
                    st => break st,
                }
            };
            assert_eq!(st, WaitStatus::Exited(child, 0), "the child's check failed");
        }
    }
}
