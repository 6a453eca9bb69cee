//! Mounting an image file: kernel squashfs through a loop device as root
//! (LOOP_CTL_GET_FREE + LOOP_CONFIGURE with autoclear, so the device frees
//! itself when unmounted and nothing leaks), squashfuse when rootless, and an
//! optional tmpfs-backed overlay for `--writable`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::BundleError;

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn sys_mount(
    src: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let (s, t, f) = (CString::new(src)?, cpath(target)?, CString::new(fstype)?);
    let d = data.map(CString::new).transpose()?;
    // SAFETY: valid C strings; data may be null.
    let r = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            f.as_ptr(),
            flags,
            d.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attaches `image` to a free loop device (read-only, autoclear); the device
/// stays while the returned file is open or while it is mounted.
fn attach_loop(image: &Path) -> io::Result<(File, PathBuf)> {
    let backing = File::open(image)?;
    let ctl = File::open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: ioctl on the loop-control fd.
        let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let dev = PathBuf::from(format!("/dev/loop{n}"));
        let f = OpenOptions::new()
            .read(true)
            .custom_flags_cloexec()
            .open(&dev)?;
        // SAFETY: zeroed is a valid LoopConfig.
        let mut cfg: LoopConfig = unsafe { std::mem::zeroed() };
        cfg.fd = backing.as_raw_fd() as u32;
        cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        let name = image.as_os_str().as_bytes();
        let len = name.len().min(63);
        cfg.info.lo_file_name[..len].copy_from_slice(&name[..len]);
        // SAFETY: ioctl with a valid LoopConfig.
        let r = unsafe {
            libc::ioctl(
                f.as_raw_fd(),
                LOOP_CONFIGURE as _,
                &cfg as *const LoopConfig,
            )
        };
        if r == 0 {
            return Ok((f, dev));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) {
            return Err(e);
        }
        // Another process took this device between GET_FREE and CONFIGURE.
    }
    Err(io::Error::from_raw_os_error(libc::EBUSY))
}

trait Cloexec {
    fn custom_flags_cloexec(&mut self) -> &mut Self;
}
impl Cloexec for OpenOptions {
    fn custom_flags_cloexec(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_CLOEXEC)
    }
}

/// Mounts the squashfs `image` read-only, nosuid, nodev at `target`.
pub fn mount_squashfs(image: &Path, target: &Path, rootless: bool) -> Result<(), BundleError> {
    let err = |source| BundleError::Mount {
        what: format!("{} on {}", image.display(), target.display()),
        source,
    };
    if rootless {
        let st = std::process::Command::new("squashfuse")
            .args(["-o", "ro,nosuid,nodev"])
            .arg(image)
            .arg(target)
            .status()
            .map_err(|e| {
                err(io::Error::new(
                    e.kind(),
                    format!("cannot run squashfuse: {e}: install squashfuse"),
                ))
            })?;
        if !st.success() {
            return Err(err(io::Error::other(format!(
                "squashfuse exited with {st}"
            ))));
        }
        return Ok(());
    }
    let (loop_file, dev) = attach_loop(image).map_err(err)?;
    let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
    let r = sys_mount(&dev.to_string_lossy(), target, "squashfs", flags, None).map_err(err);
    // The mount holds the device now; closing our fd lets autoclear free it on unmount.
    drop(loop_file);
    r
}

/// Mounts the tmpfs that holds an overlay's upper and work dirs.
pub fn mount_scratch(scratch: &Path) -> Result<(), BundleError> {
    sys_mount(
        "tmpfs",
        scratch,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755"),
    )
    .map_err(|source| BundleError::Mount {
        what: "tmpfs".into(),
        source,
    })
}

/// The overlay of `lower` at `target`, with upper and work dirs in `scratch`
/// (a [`mount_scratch`] tmpfs).
pub fn overlay_on(lower: &Path, scratch: &Path, target: &Path) -> Result<(), BundleError> {
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|source| BundleError::Io {
            what: "cannot create",
            path: d.clone(),
            source,
        })?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    sys_mount(
        "overlay",
        target,
        "overlay",
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&data),
    )
    .map_err(|source| BundleError::Mount {
        what: "overlay".into(),
        source,
    })
}

/// Unmounts (lazily, so a busy mount still goes away); rootless uses fusermount3.
pub fn unmount(target: &Path, rootless: bool) {
    if rootless {
        // Best effort, like umount2 below: callers also unmount paths that may
        // not be mounts (a dead FUSE mount cannot be told from a directory),
        // so fusermount3's complaint about those is not shown.
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(target)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        return;
    }
    if let Ok(t) = cpath(target) {
        // SAFETY: valid C string.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}
