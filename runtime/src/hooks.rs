//! OCI hooks: each runs with the container state on stdin, its own argv
//! and env, and an optional timeout. The caller decides the failure
//! semantics (abort for prestart/createRuntime/createContainer/
//! startContainer, warn for poststart/poststop).

use oci_spec::runtime::Hook;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Errors of one hook.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{stage} hook {path}: {source}")]
    Spawn {
        stage: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{stage} hook {path} failed with {status}{output}")]
    Failed {
        stage: &'static str,
        path: String,
        status: String,
        output: String,
    },
    #[error("{stage} hook {path} timed out after {secs}s")]
    Timeout {
        stage: &'static str,
        path: String,
        secs: i64,
    },
}

/// The poststart hooks, when there are any. Only they make `start` wait
/// for the container's execve (container/start.rs).
pub fn poststart(hooks: Option<&oci_spec::runtime::Hooks>) -> Option<Vec<Hook>> {
    hooks
        .and_then(|h| h.poststart().clone())
        .filter(|h| !h.is_empty())
}

/// Run `hooks` in order with `state` (JSON) on stdin; stop at the first failure.
pub fn run_all(stage: &'static str, hooks: &[Hook], state: &str) -> Result<(), HookError> {
    for h in hooks {
        tracing::debug!(stage, path = %h.path().display(), "running hook");
        run_one(stage, h, state)?;
    }
    Ok(())
}

/// Run every hook in `hooks`, logging a warning for each one that fails
/// and going on with the next: the poststart/poststop semantics ("the
/// runtime MUST log a warning, but the remaining hooks and lifecycle
/// continue as if the hook had succeeded").
pub fn run_all_warn(stage: &'static str, hooks: &[Hook], state: &str) {
    for h in hooks {
        tracing::debug!(stage, path = %h.path().display(), "running hook");
        if let Err(e) = run_one(stage, h, state) {
            crate::log::warn(&e.to_string());
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn run_one(stage: &'static str, h: &Hook, state: &str) -> Result<(), HookError> {
    let path = h.path().display().to_string();
    let spawn_err = |source| HookError::Spawn {
        stage,
        path: path.clone(),
        source,
    };
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // stdout and stderr share one pipe, read while we wait, so a chatty
    // hook cannot block on a full pipe and its last words reach the error.
    let (r, w) = pipe().map_err(spawn_err)?;
    let w2 = w.try_clone().map_err(spawn_err)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(w))
        .stderr(Stdio::from(w2));
    let mut child = cmd.spawn().map_err(spawn_err)?;
    drop(cmd);
    if let Some(mut stdin) = child.stdin.take() {
        // A hook may exit without reading stdin; EPIPE is not its failure.
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = h
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| (t, Instant::now() + Duration::from_secs(t as u64)));
    let mut out = Vec::new();
    let mut reader = std::fs::File::from(r);
    let fd = reader.as_raw_fd();
    let mut open = true;
    loop {
        if !open {
            if let Some(st) = child.try_wait().map_err(spawn_err)? {
                return finish(stage, path, st, &out);
            }
        }
        let timeout_ms = match deadline {
            Some((_, d)) => d
                .saturating_duration_since(Instant::now())
                .as_millis()
                .min(i32::MAX as u128) as i32,
            None => -1,
        };
        if let Some((secs, d)) = deadline {
            if Instant::now() >= d {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HookError::Timeout { stage, path, secs });
            }
        }
        if open {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if n > 0 {
                let mut buf = [0u8; 4096];
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => open = false,
                    Ok(k) => {
                        out.extend_from_slice(&buf[..k]);
                        if out.len() > 65536 {
                            out.drain(..out.len() - 65536);
                        }
                    }
                }
            }
        } else {
            // Output closed but the hook is still running (it closed its
            // fds): wait in short steps so the timeout still applies.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn finish(
    stage: &'static str,
    path: String,
    st: std::process::ExitStatus,
    out: &[u8],
) -> Result<(), HookError> {
    if st.success() {
        return Ok(());
    }
    let status = match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(s)) => format!("signal {s}"),
        _ => "unknown status".into(),
    };
    let text = String::from_utf8_lossy(out);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let output = if last.is_empty() {
        String::new()
    } else {
        format!(": {last}")
    };
    Err(HookError::Failed {
        stage,
        path,
        status,
        output,
    })
}
