//! The process's command line.
//!
//! The `berth` binary has its own C `main` (see main.rs). glibc passes argv
//! to std's initialiser, so `std::env::args` works there; musl does not, and
//! `std::env::args` would be empty. `main` records argv here first, and
//! every reader of the command line goes through [`os`].

use std::ffi::{CStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::sync::OnceLock;

static ARGS: OnceLock<Vec<OsString>> = OnceLock::new();

/// Records the arguments `main` received. Later calls change nothing.
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings, as C's `main` gets.
pub unsafe fn init(argc: libc::c_int, argv: *const *const libc::c_char) {
    // SAFETY: the caller's promise.
    let _ = ARGS.set(unsafe { collect(argc, argv) });
}

/// argv as owned strings, bytes kept as they are.
///
/// # Safety
/// As for [`init`].
unsafe fn collect(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<OsString> {
    (0..argc.max(0) as usize)
        // SAFETY: the caller's promise.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) })
        .map(|a| OsString::from_vec(a.to_bytes().to_vec()))
        .collect()
}

/// The arguments, program name first: those `init` recorded, or std's when
/// nothing was recorded (tests, other programs using this library).
pub fn os() -> &'static [OsString] {
    ARGS.get_or_init(|| std::env::args_os().collect())
}

/// The arguments as strings; one that is not UTF-8 is replaced lossily,
/// which only matters for an argument a parser then refuses.
pub fn strings() -> Vec<String> {
    os().iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The first argument after the program name, when it is UTF-8.
pub fn sub() -> Option<&'static str> {
    os().get(1)?.to_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn argv_is_kept_byte_for_byte() {
        let raw: [&CStr; 3] = [c"berth", c"create", c"id-\xff"];
        let argv: Vec<*const libc::c_char> = raw.iter().map(|a| a.as_ptr()).collect();
        // SAFETY: three valid C strings.
        let got = unsafe { collect(3, argv.as_ptr()) };
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], "create");
        assert_eq!(got[2].as_bytes(), b"id-\xff");
        // SAFETY: argc 0 reads nothing.
        assert!(unsafe { collect(0, std::ptr::null()) }.is_empty());
    }

    #[test]
    fn falls_back_to_std_without_init() {
        // The test harness never calls init: std's arguments are used.
        assert_eq!(os(), std::env::args_os().collect::<Vec<_>>().as_slice());
    }
}
