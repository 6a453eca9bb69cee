//! The user's SSH keys (made by `berth ssh-keygen` in their home on the
//! host) and the container's `~/.ssh`, where dropbear looks for
//! `authorized_keys`.
//!
//! The home belongs to the user, and the hook runs as root: every file there
//! is opened with the user's filesystem ids (so root never reads what the
//! user could not, also on root-squashed NFS homes), never through a
//! symlink, and must be the user's own.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth::cli::ssh_keygen::{keys_dir, AUTHORIZED_KEYS, HOST_KEY, USER_KEY};
use berth::resolve;
use nix::unistd::{Uid, User};

use crate::inject::{Access, InjectError, Rootfs};

/// Errors finding or placing the keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("uid {0} has no home directory in the host's passwd database")]
    NoHome(u32),
    #[error("no SSH keys for uid {uid} in {}: run `berth ssh-keygen` once as that user", dir.display())]
    Missing { uid: u32, dir: PathBuf },
    #[error("{}: {reason}: run `berth ssh-keygen --overwrite` as that user", path.display())]
    Unsafe { path: PathBuf, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("uid {0} has no entry in the container's /etc/passwd, which dropbear needs")]
    NoAccount(u32),
    #[error("the home of uid {uid} in the container's /etc/passwd is {home:?}: dropbear needs a real home for ~/.ssh")]
    BadHome { uid: u32, home: String },
    #[error("{}/.ssh does not exist: create it (mkdir -m 700 ~/.ssh; berth ssh-keygen does)", home.display())]
    NoDotSsh { home: PathBuf },
    #[error("cannot {what} {}: {source}", path.display())]
    State {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Inject(#[from] InjectError),
}

/// The user's key directory, opened and checked.
#[derive(Debug)]
pub struct UserKeys {
    dir: OwnedFd,
    /// The key directory on the host.
    pub path: PathBuf,
    /// The contents of its `authorized_keys`.
    pub authorized: Vec<u8>,
}

/// Runs `f` with the filesystem uid and gid of the user.
fn as_user<T>(uid: u32, gid: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: setfsuid/setfsgid only change this thread's filesystem ids;
    // they return the previous ones, restored below.
    let (old_gid, old_uid) = unsafe { (libc::setfsgid(gid), libc::setfsuid(uid)) };
    let out = f();
    // SAFETY: as above.
    unsafe {
        libc::setfsuid(old_uid as u32);
        libc::setfsgid(old_gid as u32);
    }
    out
}

impl UserKeys {
    /// Opens the key directory of `uid` (home from the host's passwd).
    pub fn open(uid: u32, gid: u32) -> Result<Self, KeyError> {
        let home = User::from_uid(Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.dir)
            .ok_or(KeyError::NoHome(uid))?;
        as_user(uid, gid, || Self::open_dir(&keys_dir(&home), uid))
    }

    fn open_dir(path: &Path, uid: u32) -> Result<Self, KeyError> {
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => KeyError::Missing {
                    uid,
                    dir: path.to_path_buf(),
                },
                _ => KeyError::Io {
                    path: path.to_path_buf(),
                    source: e,
                },
            })?;
        check_owner(&dir, path, uid)?;
        let keys = UserKeys {
            dir: dir.into(),
            path: path.to_path_buf(),
            authorized: Vec::new(),
        };
        for name in [HOST_KEY, USER_KEY] {
            keys.file(name, uid)?;
        }
        let mut authorized = Vec::new();
        keys.file(AUTHORIZED_KEYS, uid)?
            .take(1 << 20)
            .read_to_end(&mut authorized)
            .map_err(|source| KeyError::Io {
                path: path.join(AUTHORIZED_KEYS),
                source,
            })?;
        Ok(UserKeys { authorized, ..keys })
    }

    /// Opens `name` in the key directory: a regular file of the user's.
    fn file(&self, name: &str, uid: u32) -> Result<std::fs::File, KeyError> {
        let path = self.path.join(name);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.fd_path().join(name))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => KeyError::Missing {
                    uid,
                    dir: self.path.clone(),
                },
                _ => KeyError::Io {
                    path: path.clone(),
                    source: e,
                },
            })?;
        check_owner(&f, &path, uid)?;
        if !f.metadata().map(|m| m.is_file()).unwrap_or(false) {
            return Err(KeyError::Unsafe {
                path,
                reason: "not a regular file".into(),
            });
        }
        Ok(f)
    }

    /// The key directory as a path that reaches the opened directory itself
    /// (for binding it: a later rename in the home cannot redirect us).
    pub fn fd_path(&self) -> PathBuf {
        resolve::fd_path(&self.dir)
    }
}

/// The user must own `f`, and nobody else may write to it.
fn check_owner(f: &std::fs::File, path: &Path, uid: u32) -> Result<(), KeyError> {
    let md = f.metadata().map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reason = if md.uid() != uid {
        format!("owned by uid {}, not {uid}", md.uid())
    } else if md.mode() & 0o022 != 0 {
        format!("writable by others (mode {:o})", md.mode() & 0o777)
    } else {
        return Ok(());
    };
    Err(KeyError::Unsafe {
        path: path.to_path_buf(),
        reason,
    })
}

/// The container user's account, as dropbear will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub home: PathBuf,
}

/// Finds `uid` in the container's /etc/passwd.
pub fn account(root: &Rootfs, uid: u32) -> Result<Account, KeyError> {
    let passwd = root.read(Path::new("/etc/passwd")).unwrap_or_default();
    let text = String::from_utf8_lossy(&passwd);
    let fields: Vec<&str> = text
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && f[2] == uid.to_string())
        .ok_or(KeyError::NoAccount(uid))?;
    let home = fields[5];
    if !home.starts_with('/') || home == "/" || home == "/nonexistent" {
        return Err(KeyError::BadHome {
            uid,
            home: home.into(),
        });
    }
    Ok(Account {
        name: fields[0].into(),
        home: PathBuf::from(home),
    })
}

/// The directory, in the bundle's ssh directory, that covers `~/.ssh`.
const DOT_SSH: &str = "dot-ssh";

fn state_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KeyError {
    let path = path.to_path_buf();
    move |source| KeyError::State { what, path, source }
}

/// Makes [`DOT_SSH`] in `state` (the bundle's ssh directory), the user's,
/// holding only `authorized`; returns its path.
pub(crate) fn make_dot_ssh(
    state: &Path,
    (uid, gid): (u32, u32),
    authorized: &[u8],
) -> Result<PathBuf, KeyError> {
    let dir = state.join(DOT_SSH);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(state_err("create", &dir))?;
    let file = dir.join(AUTHORIZED_KEYS);
    std::fs::write(&file, authorized).map_err(state_err("write", &file))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .map_err(state_err("chmod", &file))?;
    for p in [&file, &dir] {
        std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(state_err("chown", p))?;
    }
    Ok(dir)
}

/// Removes what [`mount_dot_ssh`] made in `state`; what is gone is fine.
pub fn remove_dot_ssh(state: &Path) -> Result<(), KeyError> {
    let dir = state.join(DOT_SSH);
    // The file before its directory.
    for path in [dir.join(AUTHORIZED_KEYS), dir] {
        super::remove_if_present(&path).map_err(state_err("remove", &path))?;
    }
    Ok(())
}

/// Covers the container's `~/.ssh` with a read-only directory holding only
/// the user's berth `authorized_keys`, made in `state` (the bundle's ssh
/// directory). The host's `~/.ssh` is never written. A missing `~/.ssh` is
/// created only when the home is part of the container's own filesystem,
/// not a directory bound from the host.
pub fn mount_dot_ssh(
    root: &Rootfs,
    state: &Path,
    account: &Account,
    ids: (u32, u32),
    authorized: &[u8],
) -> Result<(), KeyError> {
    let dir = make_dot_ssh(state, ids, authorized)?;
    let dst = account.home.join(".ssh");
    if !root.exists(&dst) && root.exists(&account.home) && !root.same_fs(&account.home) {
        return Err(KeyError::NoDotSsh {
            home: account.home.clone(),
        });
    }
    root.bind(&dir, &dst, Access::ReadOnly)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_reads_the_container_passwd() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nu:x:4242:4242::/home/u:/bin/sh\nn:x:7:7::/nonexistent:/bin/sh\n",
        )
        .unwrap();
        let root = Rootfs::open(dir.path()).unwrap();
        assert_eq!(
            account(&root, 4242).unwrap(),
            Account {
                name: "u".into(),
                home: "/home/u".into()
            }
        );
        assert!(matches!(account(&root, 7), Err(KeyError::BadHome { .. })));
        assert!(matches!(account(&root, 9), Err(KeyError::NoAccount(9))));
    }

    #[test]
    fn key_files_must_be_the_users_own_and_never_symlinks() {
        let home = tempfile::tempdir().unwrap();
        let dir = berth::cli::ssh_keygen::make_keys(home.path(), false).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let keys = UserKeys::open_dir(&dir, me).unwrap();
        assert!(keys.authorized.starts_with(b"ssh-ed25519 "));
        let err = UserKeys::open_dir(&dir, me + 1).unwrap_err().to_string();
        assert!(err.contains("owned by uid"), "{err}");
        // authorized_keys pointing elsewhere is refused, not followed.
        std::fs::remove_file(dir.join(AUTHORIZED_KEYS)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join(AUTHORIZED_KEYS)).unwrap();
        let err = UserKeys::open_dir(&dir, me).unwrap_err().to_string();
        assert!(err.contains(AUTHORIZED_KEYS), "{err}");
        let err = UserKeys::open_dir(&home.path().join("none"), me).unwrap_err();
        assert!(err.to_string().contains("run `berth ssh-keygen`"), "{err}");
    }
}
