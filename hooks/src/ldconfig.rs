//! Refreshing the rootfs's dynamic linker cache after libraries were added,
//! so programs in the image find them by soname.

use std::path::Path;
use std::process::Command;

/// Runs the host's `ldconfig -r ROOTFS` (it chroots into the rootfs and reads
/// the image's /etc/ld.so.conf), after adding `extra_dirs` to the search path
/// through /etc/ld.so.conf.d/berth.conf inside the rootfs.
pub fn refresh(rootfs: &crate::inject::Rootfs, extra_dirs: &[&Path]) -> Result<(), String> {
    if !extra_dirs.is_empty() {
        let mut conf = String::from("# written by a berth hook\n");
        for d in extra_dirs {
            conf.push_str(&format!("{}\n", d.display()));
        }
        rootfs
            .write(
                Path::new("/etc/ld.so.conf.d/berth.conf"),
                conf.as_bytes(),
                0o644,
            )
            .map_err(|e| e.to_string())?;
        // Images without an ld.so.conf (busybox) would not read the .d file.
        if !rootfs.exists(Path::new("/etc/ld.so.conf")) {
            rootfs
                .write(
                    Path::new("/etc/ld.so.conf"),
                    b"include /etc/ld.so.conf.d/*.conf\n",
                    0o644,
                )
                .map_err(|e| e.to_string())?;
        }
    }
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("ldconfig not found on the host (Debian package libc-bin)")?;
    let out = Command::new(ldconfig)
        .arg("-r")
        .arg(rootfs.path())
        .output()
        .map_err(|e| format!("cannot run {ldconfig}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{ldconfig} -r {} failed ({}): {}",
            rootfs.path().display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
