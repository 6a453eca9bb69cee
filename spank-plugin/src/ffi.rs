//! The boundary between slurmstepd's C and our Rust.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// SPANK's success return value.
pub const SPANK_OK: libc::c_int = 0;
/// SPANK's generic failure return value (`ESPANK_ERROR`); Slurm fails the step.
pub const SPANK_FAIL: libc::c_int = -1;

/// Runs one plugin callback: `Ok` becomes `SPANK_OK`; an error or a panic is logged
/// through `slurm_error` as `berth: <callback>: <cause>` and becomes `SPANK_FAIL`.
///
/// A panic must never unwind into slurmstepd (undefined behaviour across `extern "C"`),
/// so it is caught here and reported like any other error.
pub fn guard<E: std::fmt::Display>(
    callback: &str,
    body: impl FnOnce() -> Result<(), E>,
) -> libc::c_int {
    guard_quiet(callback, || body().map_err(Some))
}

/// [`guard`] for a body that may also fail quietly (`Err(None)`): an error
/// another task already reported fails this one without a second message.
pub fn guard_quiet<E: std::fmt::Display>(
    callback: &str,
    body: impl FnOnce() -> Result<(), Option<E>>,
) -> libc::c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => SPANK_OK,
        Ok(Err(None)) => SPANK_FAIL,
        Ok(Err(Some(e))) => {
            crate::log::error(&format!("{callback}: {e}"));
            SPANK_FAIL
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            crate::log::error(&format!("{callback}: internal error: {what}"));
            SPANK_FAIL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_maps_to_spank_ok() {
        assert_eq!(guard::<String>("t", || Ok(())), SPANK_OK);
    }

    #[test]
    fn error_and_panic_map_to_failure() {
        assert_eq!(guard("t", || Err("bad")), SPANK_FAIL);
        assert_eq!(guard::<String>("t", || panic!("boom")), SPANK_FAIL);
    }

    #[test]
    fn quiet_failures_and_panics_fail_too() {
        assert_eq!(guard_quiet::<String>("t", || Err(None)), SPANK_FAIL);
        assert_eq!(guard_quiet("t", || Err(Some("bad"))), SPANK_FAIL);
        assert_eq!(guard_quiet::<String>("t", || panic!("boom")), SPANK_FAIL);
    }
}
