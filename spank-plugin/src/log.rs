//! Messages through Slurm's logging, so they land where admins and users look:
//! `srun` prints errors as `berth: error: ...`, slurmd's log keeps the rest.
//!
//! Outside slurmd (unit tests, `cargo test`) the Slurm symbols are absent, so the
//! messages go to stderr instead; the symbols are looked up once at run time.

use std::ffi::CString;

use once_cell::sync::Lazy;

type LogFn = unsafe extern "C" fn(*const libc::c_char, ...);

struct SlurmLog {
    error: Option<LogFn>,
    info: Option<LogFn>,
    verbose: Option<LogFn>,
    debug: Option<LogFn>,
}

fn lookup(name: &str) -> Option<LogFn> {
    let c = CString::new(name).ok()?;
    // SAFETY: dlsym on the global namespace with a valid C string; a non-null result
    // is one of Slurm's variadic `void f(const char *fmt, ...)` log functions.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) };
    (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, LogFn>(sym) })
}

static SLURM: Lazy<SlurmLog> = Lazy::new(|| SlurmLog {
    error: lookup("slurm_error"),
    info: lookup("slurm_info"),
    verbose: lookup("slurm_verbose"),
    debug: lookup("slurm_debug"),
});

fn emit(f: Option<LogFn>, level: &str, msg: &str) {
    // Slurm's functions take a printf format: pass the message as an argument to "%s"
    // so a `%` in a path or an image name cannot be read as a conversion.
    let text =
        CString::new(format!("berth: {msg}").replace('\0', " ")).expect("NULs were replaced");
    match f {
        // SAFETY: a valid format string with exactly one `%s` and its C string.
        Some(f) => unsafe { f(c"%s".as_ptr(), text.as_ptr()) },
        None => eprintln!("{level}: {}", text.to_string_lossy()),
    }
}

/// An error the user must see; `srun` prints it as `berth: error: ...`.
pub fn error(msg: &str) {
    emit(SLURM.error, "error", msg)
}

/// A notable event, in slurmd's log and shown by `srun -v`.
pub fn info(msg: &str) {
    emit(SLURM.info, "info", msg)
}

/// Detail shown with `srun -vv`.
pub fn verbose(msg: &str) {
    emit(SLURM.verbose, "verbose", msg)
}

/// Developer detail, only at slurmd's debug levels.
pub fn debug(msg: &str) {
    emit(SLURM.debug, "debug", msg)
}
