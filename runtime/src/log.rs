//! Logging: `tracing` for structured debug output plus runc-compatible
//! JSON lines in the `--log` file, because Podman/conmon read the `msg`
//! field of the last line to explain a runtime failure.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `--log-format json`: the log file gets JSON lines instead of text.
static JSON: OnceLock<bool> = OnceLock::new();

/// The `--log` file, opened once: the container's init keeps this very fd
/// across its fork (it closes every other), and a path reopened after
/// pivot_root would name a file inside the container.
static FILE: OnceLock<std::fs::File> = OnceLock::new();

/// The log file's fd, for the init's list of fds to keep.
pub fn fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    FILE.get().map(|f| f.as_raw_fd())
}

/// `tracing`'s writer for the log file: writes through the one shared fd.
struct LogFile;

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match FILE.get() {
            Some(mut f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Install the log target and, when `BERTH_LOG` is set or `debug` is true,
/// a tracing subscriber. Without either we install nothing, so the
/// `tracing` macros cost a relaxed atomic load on the hot path.
pub fn init(path: Option<PathBuf>, json: bool, debug: bool) {
    let _ = JSON.set(json);
    if let Some(p) = &path {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = FILE.set(f);
        }
    }
    let filter =
        std::env::var("BERTH_LOG")
            .ok()
            .or(if debug { Some("debug".into()) } else { None });
    let Some(filter) = filter else { return };
    let env_filter = tracing_subscriber::EnvFilter::new(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    if json && FILE.get().is_some() {
        let _ = builder.json().with_writer(|| LogFile).try_init();
    } else {
        let _ = builder.try_init();
    }
}

fn now_rfc3339() -> String {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the provided timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: gmtime_r only reads the time and writes the tm struct.
    unsafe { libc::gmtime_r(&ts.tv_sec, &mut tm) };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ts.tv_nsec
    )
}

/// Current time as RFC 3339, used for the state's `created` field.
pub fn timestamp() -> String {
    now_rfc3339()
}

fn emit(level: &str, msg: &str) {
    let Some(mut f) = FILE.get() else {
        return;
    };
    let line = if JSON.get() == Some(&true) {
        serde_json::json!({"level": level, "msg": msg, "time": now_rfc3339()}).to_string()
    } else {
        format!("{} {level} {msg}", now_rfc3339())
    };
    let _ = writeln!(f, "{line}");
}

/// Report a warning: stderr plus the log file. Used where the spec says
/// "warn and continue" (poststart/poststop hooks, skipped cgroups).
pub fn warn(msg: &str) {
    tracing::warn!(message = msg);
    let _ = writeln!(std::io::stderr(), "berth: warning: {msg}");
    emit("warning", msg);
}

/// Report the fatal error of this invocation as one line.
pub fn error(msg: &str) {
    tracing::error!(message = msg);
    let _ = writeln!(std::io::stderr(), "berth: error: {msg}");
    emit("error", msg);
}
