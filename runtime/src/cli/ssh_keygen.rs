//! `berth ssh-keygen [--overwrite]`: makes the caller's SSH keys for
//! containers started with `--ssh`/`--container-ssh`, with Debian's
//! `dropbearkey` (package dropbear-bin), like `sarus ssh-keygen`.
//!
//! Under `~/.local/share/berth/ssh/` (mode 0700): the host key of the
//! containers' SSH servers, the user key their `ssh` client uses, and an
//! `authorized_keys` holding that key's public half. The SSH hook binds this
//! directory read-only into each container. `~/.ssh` is created (0700) when
//! missing, since the hook mounts the container's own `~/.ssh` there.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

/// The key directory, relative to the user's home.
pub const KEYS_DIR: &str = ".local/share/berth/ssh";
/// The SSH server's host key (dropbear format).
pub const HOST_KEY: &str = "host_key";
/// The user's client key (dropbear format).
pub const USER_KEY: &str = "id_dropbear";
/// The public half of [`USER_KEY`], in OpenSSH's authorized_keys format.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";

/// Errors of `berth ssh-keygen`.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    #[error("HOME is unset or not an existing absolute directory (uid {0}): run berth ssh-keygen from a login shell, or set HOME")]
    NoHome(u32),
    #[error("SSH keys already exist in {}: pass --overwrite to replace them", .0.display())]
    Exists(PathBuf),
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run dropbearkey: {0}: install the Debian package dropbear-bin")]
    Missing(std::io::Error),
    #[error("dropbearkey {args} failed: {output}")]
    Tool { args: String, output: String },
}

#[derive(Debug, Parser)]
#[command(
    name = "berth ssh-keygen",
    about = "Make your SSH keys for containers run with --ssh"
)]
struct Args {
    /// Replace existing keys.
    #[arg(long)]
    overwrite: bool,
}

/// The key directory of the user whose home is `home`.
pub fn keys_dir(home: &Path) -> PathBuf {
    home.join(KEYS_DIR)
}

fn io(what: &'static str, path: &Path) -> impl Fn(std::io::Error) -> KeygenError {
    let path = path.to_path_buf();
    move |source| KeygenError::Io {
        what,
        path: path.clone(),
        source,
    }
}

/// Runs dropbearkey with `args`; returns its standard output.
fn dropbearkey(args: &[&str]) -> Result<String, KeygenError> {
    let out = Command::new("dropbearkey")
        .args(args)
        .output()
        .map_err(KeygenError::Missing)?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr);
        return Err(KeygenError::Tool {
            args: args.join(" "),
            output: text.lines().last().unwrap_or("").trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes the three files into the empty directory `dir`.
fn generate(dir: &Path) -> Result<(), KeygenError> {
    for name in [HOST_KEY, USER_KEY] {
        let path = dir.join(name).display().to_string();
        dropbearkey(&["-t", "ed25519", "-f", &path])?;
    }
    let user_key = dir.join(USER_KEY).display().to_string();
    // `dropbearkey -y` prints the public key as one line in authorized_keys format.
    let out = dropbearkey(&["-y", "-f", &user_key])?;
    let line = out
        .lines()
        .find(|l| l.starts_with("ssh-"))
        .ok_or_else(|| KeygenError::Tool {
            args: format!("-y -f {user_key}"),
            output: "no public key line in its output".into(),
        })?;
    let path = dir.join(AUTHORIZED_KEYS);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, format!("{line}\n").as_bytes()))
        .map_err(io("write", &path))
}

/// Makes the keys of the user running this command in their home
/// (`$HOME`: berth does no passwd lookups); returns the key directory.
pub fn keygen(overwrite: bool) -> Result<PathBuf, KeygenError> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute() && h.is_dir())
        .ok_or(KeygenError::NoHome(nix::unistd::geteuid().as_raw()))?;
    make_keys(&home, overwrite)
}

/// Makes the keys under `home` (see [`keygen`]). The new keys are made in a
/// temporary sibling directory and renamed into place, so a failure never
/// leaves a half-made key directory behind.
pub fn make_keys(home: &Path, overwrite: bool) -> Result<PathBuf, KeygenError> {
    let dir = keys_dir(home);
    if dir.exists() && !overwrite {
        return Err(KeygenError::Exists(dir));
    }
    let parent = dir.parent().unwrap_or(home);
    std::fs::create_dir_all(parent).map_err(io("create", parent))?;
    let tmp = parent.join(format!(".ssh-keygen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(io("create", &tmp))?;
    let made = generate(&tmp).and_then(|()| {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => return Err(io("remove", &dir)(e)),
            _ => {}
        }
        std::fs::rename(&tmp, &dir).map_err(io("rename", &tmp))
    });
    if made.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    made?;
    let dot_ssh = home.join(".ssh");
    match std::fs::DirBuilder::new().mode(0o700).create(&dot_ssh) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(io("create", &dot_ssh)(e)),
        _ => Ok(dir),
    }
}

/// Runs `ssh-keygen` when it is the subcommand; `None` otherwise.
pub fn dispatch() -> Option<i32> {
    if crate::args::sub() != Some("ssh-keygen") {
        return None;
    }
    let args = Args::parse_from(crate::args::os().iter().skip(1));
    crate::log::init(None, false, false);
    Some(match keygen(args.overwrite) {
        Ok(dir) => {
            crate::outln!("SSH keys for containers written to {}", dir.display());
            0
        }
        Err(e) => {
            crate::log::error(&e.to_string());
            1
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn makes_private_keys_and_refuses_to_overwrite_unless_asked() {
        let home = tempfile::tempdir().unwrap();
        let dir = make_keys(home.path(), false).unwrap();
        assert_eq!(dir, home.path().join(KEYS_DIR));
        assert_eq!(mode(&dir), 0o700);
        for f in [HOST_KEY, USER_KEY, AUTHORIZED_KEYS] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let auth = std::fs::read_to_string(dir.join(AUTHORIZED_KEYS)).unwrap();
        assert!(
            auth.starts_with("ssh-ed25519 ") && auth.ends_with('\n'),
            "{auth}"
        );
        assert_eq!(mode(&home.path().join(".ssh")), 0o700);
        let err = make_keys(home.path(), false).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        let key = std::fs::read(dir.join(USER_KEY)).unwrap();
        make_keys(home.path(), true).unwrap();
        assert_ne!(std::fs::read(dir.join(USER_KEY)).unwrap(), key, "new key");
        let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, ["ssh"], "no temporary directory is left");
    }
}
