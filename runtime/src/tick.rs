//! A periodic SIGALRM with a handler that does nothing and no SA_RESTART:
//! it makes a blocking system call return EINTR now and then, so a wait on
//! something that may never come (a fifo whose other side died) can look
//! around and give up.

use std::time::Duration;

/// The armed timer; dropping it disarms it and restores SIGALRM's handler.
pub struct Tick {
    old: libc::sigaction,
}

extern "C" fn nothing(_: libc::c_int) {}

fn timeval(d: Duration) -> libc::timeval {
    libc::timeval {
        // `as _`: the field types differ between glibc and musl.
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    }
}

fn set_timer(every: Duration) -> nix::Result<()> {
    let it = libc::itimerval {
        it_interval: timeval(every),
        it_value: timeval(every),
    };
    // SAFETY: a valid itimerval; the old value is not asked for.
    if unsafe { libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()) } != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

impl Tick {
    /// Interrupt blocking system calls every `d` until dropped.
    pub fn every(d: Duration) -> nix::Result<Tick> {
        // SAFETY: zeroed sigaction structs are valid to fill in; the handler
        // is async-signal-safe (it does nothing).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = nothing as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGALRM, &sa, &mut old) != 0 {
                return Err(nix::Error::last());
            }
            let tick = Tick { old };
            set_timer(d)?;
            Ok(tick)
        }
    }
}

impl Drop for Tick {
    fn drop(&mut self) {
        // Disarm first: a SIGALRM raised before this returns is delivered
        // to `nothing` on the way out, never to a restored default action
        // (which would end the process).
        let _ = set_timer(Duration::ZERO);
        // SAFETY: restoring the handler saved in `every`.
        unsafe { libc::sigaction(libc::SIGALRM, &self.old, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a child process: the test harness's other threads would take a
    /// process-wide SIGALRM as well as ours.
    #[test]
    fn a_blocking_read_is_interrupted_then_the_timer_is_gone() {
        crate::process::fork::assert_in_child(|| {
            let (r, _w) = nix::unistd::pipe().unwrap();
            let interrupted = {
                let _tick = Tick::every(Duration::from_millis(10)).unwrap();
                let mut buf = [0u8; 1];
                nix::unistd::read(&r, &mut buf) == Err(nix::Error::EINTR)
            };
            // SAFETY: zeroed out-struct for getitimer.
            let mut cur: libc::itimerval = unsafe { std::mem::zeroed() };
            let disarmed = unsafe { libc::getitimer(libc::ITIMER_REAL, &mut cur) } == 0
                && (cur.it_value.tv_sec, cur.it_value.tv_usec) == (0, 0);
            interrupted && disarmed
        });
    }
}
