//! Turns a staging directory into one squashfs file with `mksquashfs`.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::site::SquashfsConfig;

/// Runs mksquashfs; the error carries its exit status and last stderr line.
pub fn mksquashfs(
    src: &Path,
    dest: &Path,
    cfg: &SquashfsConfig,
    pseudo: Option<&Path>,
) -> Result<(), String> {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(src)
        .arg(dest)
        .args(["-noappend", "-no-exports", "-quiet", "-no-progress"]);
    if let Some(p) = pseudo {
        // A user's conversion: owners and modes from the layers, and the
        // root directory as every image has it.
        cmd.arg("-pf").arg(p);
        cmd.args(["-root-mode", "755", "-root-uid", "0", "-root-gid", "0"]);
    }
    match cfg.compression.as_str() {
        "none" => {
            cmd.args(["-noI", "-noD", "-noF", "-noX"]);
        }
        comp => {
            cmd.args(["-comp", comp]);
            if let (Some(level), "zstd" | "gzip" | "xz") = (cfg.level, comp) {
                let opt = if comp == "xz" {
                    "-Xdict-size"
                } else {
                    "-Xcompression-level"
                };
                if comp != "xz" {
                    cmd.arg(opt).arg(level.to_string());
                }
            }
        }
    }
    if cfg.processors > 0 {
        cmd.arg("-processors").arg(cfg.processors.to_string());
    }
    tracing::debug!(?cmd, "running mksquashfs");
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run mksquashfs: {e}: install squashfs-tools"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    Err(format!("{} ({last})", out.status))
}
