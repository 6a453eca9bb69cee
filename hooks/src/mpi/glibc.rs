//! The glibc step: host MPI libraries are built against the host's glibc and
//! may require symbol versions (`GLIBC_2.34`, ...) that an older image's
//! libc.so.6 does not define. When the newest `GLIBC_x.y` any injected
//! library requires is newer than the newest the image's libc.so.6 defines,
//! the image's glibc (loader, libc and its sibling libraries) is replaced by
//! the host's, all together since they are one release that must match.
//! An image whose C library is not glibc (musl: no libc.so.6, another loader
//! name) is refused, since no glibc binary can run on it.

use std::path::PathBuf;

use super::MpiError;
use crate::elf::GlibcVersion;
use crate::inject::Rootfs;
use crate::libpath::{Finder, Host, Tree};

/// glibc's libraries besides libc.so.6 and the loader, by soname. Each one
/// the image has is replaced along with libc when glibc is replaced, since
/// they call glibc-private symbols of their own release.
pub const SIBLINGS: &[&str] = &[
    "libm.so.6",
    "libmvec.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libBrokenLocale.so.1",
    "libnss_files.so.2",
    "libnss_dns.so.2",
    "libnss_compat.so.2",
    "libnss_hesiod.so.2",
    "libthread_db.so.1",
    "libc_malloc_debug.so.0",
];

/// True for sonames the glibc step, not the closure, deals with.
pub fn is_glibc(soname: &str) -> bool {
    soname == "libc.so.6" || is_loader(soname) || SIBLINGS.contains(&soname)
}

fn is_loader(soname: &str) -> bool {
    soname.starts_with("ld-linux") || soname.starts_with("ld64.so") || soname.starts_with("ld.so")
}

/// The binds (host file, image file) that replace the image's glibc, empty
/// when the image's glibc is recent enough for `required`.
pub fn plan(
    required: Option<GlibcVersion>,
    host: &Finder<'_, Host>,
    image: &Finder<'_, Rootfs>,
) -> Result<Vec<(PathBuf, PathBuf)>, MpiError> {
    let Some(required) = required else {
        return Ok(Vec::new());
    };
    let image_libc = image.find("libc.so.6", &[]).ok_or_else(|| {
        MpiError::Glibc(format!(
            "the image has no glibc (no libc.so.6; a musl image?) but the host MPI libraries need glibc {required}: use an image based on glibc"
        ))
    })?;
    let image_info = image.tree().elf(&image_libc).ok_or_else(|| {
        MpiError::Glibc(format!("cannot read the image's {}", image_libc.display()))
    })?;
    let image_version = image_info.glibc_defined.ok_or_else(|| {
        MpiError::Glibc(format!(
            "the image's {} defines no GLIBC_ versions (not glibc?): use an image based on glibc",
            image_libc.display()
        ))
    })?;
    if image_version >= required {
        return Ok(Vec::new());
    }
    let host_libc = host
        .find("libc.so.6", &[])
        .and_then(|p| host.tree().real(&p))
        .ok_or_else(|| MpiError::Glibc("the host has no libc.so.6".into()))?;
    let host_info = host
        .tree()
        .elf(&host_libc)
        .ok_or_else(|| MpiError::Glibc(format!("cannot read {}", host_libc.display())))?;
    let host_version = host_info.glibc_defined.unwrap_or(GlibcVersion(0, 0));
    if host_version < required {
        return Err(MpiError::Glibc(format!(
            "the host MPI libraries need glibc {required} but the host's {} is {host_version}: fix MPI_LIBS",
            host_libc.display()
        )));
    }
    let loader = host_info
        .needed
        .iter()
        .find(|n| is_loader(n))
        .cloned()
        .ok_or_else(|| MpiError::Glibc(format!("{} names no loader", host_libc.display())))?;
    let mut binds = Vec::new();
    let mut pair = |soname: &str, must: bool| -> Result<(), MpiError> {
        let in_image = image.find(soname, &[]).and_then(|p| image.tree().real(&p));
        let on_host = host.find(soname, &[]).and_then(|p| host.tree().real(&p));
        match (on_host, in_image) {
            (Some(h), Some(i)) => binds.push((h, i)),
            (_, None) if must => {
                return Err(MpiError::Glibc(format!(
                    "the image's glibc {image_version} is older than the {required} the host MPI libraries need, and the image has no {soname} to replace with the host's: use an image with glibc >= {required}"
                )))
            }
            _ => {}
        }
        Ok(())
    };
    pair("libc.so.6", true)?;
    pair(&loader, true)?;
    for s in SIBLINGS {
        pair(s, false)?;
    }
    Ok(binds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfInfo;
    use std::path::Path;

    fn libc_info() -> ElfInfo {
        ElfInfo::parse(&std::fs::read(host_libc()).unwrap()).unwrap()
    }

    fn host_lib(soname: &str) -> PathBuf {
        let ls = ElfInfo::parse(&std::fs::read("/bin/ls").unwrap()).unwrap();
        let f = Finder::new(&Host, ls.class, ls.machine);
        let p = f.find(soname, &[]).unwrap();
        std::fs::canonicalize(p).unwrap()
    }

    fn host_libc() -> PathBuf {
        host_lib("libc.so.6")
    }

    /// The image's multiarch library directory, relative to its root.
    fn lib_dir() -> PathBuf {
        Path::new("usr/lib").join(crate::libpath::triplet())
    }

    /// A rootfs whose libc.so.6 is a copy of the host's `libc`.
    fn image_with_libc(libc: &Path) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(lib_dir());
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::copy(libc, lib.join("libc.so.6")).unwrap();
        dir
    }

    #[test]
    fn decides_from_versions() {
        let info = libc_info();
        let host_v = info.glibc_defined.unwrap();
        let host = Finder::new(&Host, info.class, info.machine);
        let dir = image_with_libc(&host_libc());
        let root = Rootfs::open(dir.path()).unwrap();
        let image = Finder::new(&root, info.class, info.machine);
        // Nothing required, or no more than the image has: nothing replaced.
        assert!(plan(None, &host, &image).unwrap().is_empty());
        assert!(plan(Some(host_v), &host, &image).unwrap().is_empty());
        // Newer than the host has: refused, naming both.
        let newer = GlibcVersion(host_v.0, host_v.1 + 1);
        let err = plan(Some(newer), &host, &image).unwrap_err().to_string();
        assert!(
            err.contains(&newer.to_string()) && err.contains("fix MPI_LIBS"),
            "{err}"
        );
    }

    #[test]
    fn replaces_an_older_glibc_with_its_loader() {
        let info = libc_info();
        let host = Finder::new(&Host, info.class, info.machine);
        // glibc >= 2.34 merged libdl into libc: its stub defines an older
        // newest version, so it stands for an older image's libc.
        let dir = image_with_libc(&host_lib("libdl.so.2"));
        let root = Rootfs::open(dir.path()).unwrap();
        let image = Finder::new(&root, info.class, info.machine);
        let required = info.glibc_defined;
        let err = plan(required, &host, &image).unwrap_err().to_string();
        assert!(err.contains("has no ld-linux"), "{err}");
        let loader = info.needed.iter().find(|n| is_loader(n)).unwrap();
        std::fs::copy(host_lib(loader), dir.path().join(lib_dir()).join(loader)).unwrap();
        let binds = plan(required, &host, &image).unwrap();
        assert_eq!(binds.len(), 2, "{binds:?}");
        assert_eq!(binds[0].0, host_libc());
        assert_eq!(binds[0].1, Path::new("/").join(lib_dir()).join("libc.so.6"));
        assert!(binds[1].1.ends_with(loader), "{binds:?}");
    }

    #[test]
    fn refuses_an_image_without_glibc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib")).unwrap();
        std::fs::write(dir.path().join("lib/ld-musl-x86_64.so.1"), b"musl").unwrap();
        let root = Rootfs::open(dir.path()).unwrap();
        let info = libc_info();
        let host = Finder::new(&Host, info.class, info.machine);
        let image = Finder::new(&root, info.class, info.machine);
        let err = plan(Some(GlibcVersion(2, 17)), &host, &image)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no libc.so.6") && err.contains("musl"),
            "{err}"
        );
        assert!(is_glibc("libm.so.6") && is_glibc("ld-linux-x86-64.so.2"));
        assert!(!is_glibc("libmpich.so.12"));
    }
}
