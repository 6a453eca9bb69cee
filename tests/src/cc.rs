//! Compiling the small C programs and libraries the test kit needs (fake
//! drivers, MPI test programs) with the host's `cc`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A failed compilation.
#[derive(Debug, thiserror::Error)]
pub enum CcError {
    /// `cc` cannot be run.
    #[error("cannot run cc (apt-get install gcc): {0}")]
    Spawn(std::io::Error),
    /// `cc` reported errors.
    #[error("cc {} failed: {stderr}", out.display())]
    Failed { out: PathBuf, stderr: String },
}

/// Runs `cc -O2 -Wall -Werror SOURCES FLAGS -o OUT` (flags after the sources,
/// so libraries such as `-ldl` link).
pub fn compile(out: &Path, sources: &[&Path], flags: &[&str]) -> Result<(), CcError> {
    let o = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror"])
        .args(sources)
        .args(flags)
        .arg("-o")
        .arg(out)
        .output()
        .map_err(CcError::Spawn)?;
    if !o.status.success() {
        return Err(CcError::Failed {
            out: out.to_path_buf(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_the_compiler_message() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bad.c");
        std::fs::write(&src, "int main(void) { return undefined_name; }\n").unwrap();
        let e = compile(&dir.path().join("bad"), &[&src], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("undefined_name"), "{e}");
        std::fs::write(&src, "int main(void) { return 0; }\n").unwrap();
        compile(&dir.path().join("ok"), &[&src], &[]).unwrap();
        assert!(std::process::Command::new(dir.path().join("ok"))
            .status()
            .unwrap()
            .success());
    }
}
