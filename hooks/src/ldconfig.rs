//! Refreshing the rootfs's dynamic linker cache after libraries were added,
//! so programs in the image find them by soname.

use std::path::Path;
use std::process::Command;

/// Runs the host's `ldconfig -r ROOTFS` (it chroots into the rootfs and reads
/// the image's /etc/ld.so.conf), after adding `extra_dirs` to the search path
/// through /etc/ld.so.conf.d/berth.conf inside the rootfs.
pub fn refresh(rootfs: &crate::inject::Rootfs, extra_dirs: &[&Path]) -> Result<(), String> {
    refresh_with(None, rootfs, extra_dirs)
}

/// [`refresh`] with the host's `ldconfig` at `ldconfig` when given (a hook's
/// `LDCONFIG_PATH`), else at /sbin/ldconfig or /usr/sbin/ldconfig.
pub fn refresh_with(
    ldconfig: Option<&Path>,
    rootfs: &crate::inject::Rootfs,
    extra_dirs: &[&Path],
) -> Result<(), String> {
    if !extra_dirs.is_empty() {
        let path = Path::new("/etc/ld.so.conf.d/berth.conf");
        // Several hooks add directories: keep those an earlier one listed.
        let mut conf = rootfs
            .read(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|_| String::from("# written by berth hooks\n"));
        for d in extra_dirs {
            let line = d.display().to_string();
            if !conf.lines().any(|l| l == line) {
                conf.push_str(&format!("{line}\n"));
            }
        }
        rootfs
            .write(path, conf.as_bytes(), 0o644)
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
    let ldconfig = match ldconfig {
        Some(p) if p.exists() => p.display().to_string(),
        Some(p) => return Err(format!("{} does not exist: fix LDCONFIG_PATH", p.display())),
        None => ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("ldconfig not found on the host (Debian package libc-bin)")?
            .to_string(),
    };
    let out = Command::new(&ldconfig)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_of_several_hooks_accumulate() {
        let dir = tempfile::tempdir().unwrap();
        let root = crate::inject::Rootfs::open(dir.path()).unwrap();
        refresh(&root, &[Path::new("/opt/a/lib")]).unwrap();
        refresh(&root, &[Path::new("/opt/b/lib"), Path::new("/opt/a/lib")]).unwrap();
        let conf = std::fs::read_to_string(dir.path().join("etc/ld.so.conf.d/berth.conf")).unwrap();
        let dirs: Vec<&str> = conf.lines().filter(|l| l.starts_with('/')).collect();
        assert_eq!(dirs, ["/opt/a/lib", "/opt/b/lib"]);
        assert!(dir.path().join("etc/ld.so.cache").exists());
    }
}
