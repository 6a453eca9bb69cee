//! The unprivileged user that jobs and rootless containers run as in tests.
//!
//! Created idempotently with the system's own tools so that it is a real account
//! (passwd, group, subordinate id ranges) exactly like a site's users.

use std::process::Command;

use nix::unistd::{Group, User};

/// Name of the test user.
pub const NAME: &str = "berth-test";
/// Its uid, and the gid of its primary group of the same name.
pub const UID: u32 = 4242;
/// A supplementary group the user belongs to, so tests can check that groups carry over.
pub const EXTRA_GROUP: &str = "berth-extra";
/// The supplementary group's gid.
pub const EXTRA_GID: u32 = 4243;
/// The subordinate uid/gid range for rootless user namespaces with many ids.
pub const SUBID_RANGE: (u32, u32) = (200_000, 65_536);

/// Errors creating the test user.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// A system tool could not be run or failed.
    #[error("{tool} failed: {detail}: run the tests as root on a system with the passwd package")]
    Tool { tool: String, detail: String },
    /// The account exists with different ids than the tests expect.
    #[error("user {NAME} exists with uid {0}, expected {UID}: remove it with `userdel -r {NAME}`")]
    WrongUid(u32),
}

fn run(tool: &str, args: &[&str]) -> Result<(), UserError> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| UserError::Tool {
            tool: tool.into(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(UserError::Tool {
        tool: tool.into(),
        detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn has_subids(file: &str) -> bool {
    std::fs::read_to_string(file)
        .map(|t| t.lines().any(|l| l.starts_with(&format!("{NAME}:"))))
        .unwrap_or(false)
}

/// Gives /dev/fuse mode 0666, as udev's default rules do on any Debian host
/// (containers and minimal VMs without udev leave it 0600), so the test user
/// can mount images with squashfuse like a user on a real cluster node.
fn fuse_for_users() -> Result<(), UserError> {
    use std::os::unix::fs::PermissionsExt;
    let fuse = std::path::Path::new("/dev/fuse");
    let mode = std::fs::metadata(fuse).map(|m| m.permissions().mode() & 0o777);
    if mode.is_ok_and(|m| m != 0o666) {
        std::fs::set_permissions(fuse, std::fs::Permissions::from_mode(0o666)).map_err(|e| {
            UserError::Tool {
                tool: "chmod /dev/fuse".into(),
                detail: e.to_string(),
            }
        })?;
    }
    Ok(())
}

/// The lock that serialises [`ensure`] across test processes. Not under the
/// kit's root: the account is the host's, whatever `BERTH_DEV_DIR` says.
const LOCK: &str = "/tmp/berth-test-user-ensure.lock";

/// `program` run as the test user with its groups (`setpriv`), for tests of
/// unprivileged use.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new("setpriv");
    c.args([
        format!("--reuid={UID}"),
        format!("--regid={UID}"),
        "--init-groups".into(),
    ])
    .arg(program);
    c
}

/// Makes sure the test user, its groups and its subordinate id ranges exist,
/// and that users can use FUSE. Safe to call from parallel test processes:
/// one at a time checks and creates.
pub fn ensure() -> Result<User, UserError> {
    let _lock =
        crate::lock::exclusive(std::path::Path::new(LOCK)).map_err(|e| UserError::Tool {
            tool: format!("lock {LOCK}"),
            detail: e.to_string(),
        })?;
    if Group::from_name(EXTRA_GROUP).ok().flatten().is_none() {
        run("groupadd", &["-g", &EXTRA_GID.to_string(), EXTRA_GROUP])?;
    }
    match User::from_name(NAME).ok().flatten() {
        Some(u) if u.uid.as_raw() != UID => return Err(UserError::WrongUid(u.uid.as_raw())),
        Some(_) => {}
        None => run(
            "useradd",
            &["-m", "-u", &UID.to_string(), "-U", "-s", "/bin/sh", NAME],
        )?,
    }
    let extra = Group::from_name(EXTRA_GROUP).ok().flatten();
    if !extra.is_some_and(|g| g.mem.iter().any(|m| m == NAME)) {
        run("usermod", &["-aG", EXTRA_GROUP, NAME])?;
    }
    // useradd allocates subordinate ids only for some uid ranges and settings:
    // set them explicitly so rootless tests get the same range everywhere.
    let range = format!("{}-{}", SUBID_RANGE.0, SUBID_RANGE.0 + SUBID_RANGE.1 - 1);
    if !has_subids("/etc/subuid") {
        run("usermod", &["--add-subuids", &range, NAME])?;
    }
    if !has_subids("/etc/subgid") {
        run("usermod", &["--add-subgids", &range, NAME])?;
    }
    fuse_for_users()?;
    User::from_name(NAME)
        .ok()
        .flatten()
        .ok_or_else(|| UserError::Tool {
            tool: "useradd".into(),
            detail: format!("user {NAME} not found after creation"),
        })
}
