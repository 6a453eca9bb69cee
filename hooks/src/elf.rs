//! What a hook needs to know about a shared library, read from its ELF
//! dynamic section and symbol-version sections with goblin (never by running
//! `ldd`, which would execute code from the image).

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::path::Path;
use std::ptr::NonNull;

use goblin::elf::{header, Elf};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

/// A glibc symbol version such as `GLIBC_2.34`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlibcVersion(pub u32, pub u32);

impl GlibcVersion {
    /// Parses `GLIBC_2.34` (or `GLIBC_2.2.5`, whose third part is ignored);
    /// `GLIBC_PRIVATE` and other names give `None`.
    pub fn parse(name: &str) -> Option<Self> {
        let mut parts = name.strip_prefix("GLIBC_")?.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(GlibcVersion(major, minor))
    }
}

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// The parts of an ELF shared object that library injection uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElfInfo {
    /// DT_SONAME, when set.
    pub soname: Option<String>,
    /// DT_NEEDED entries, in order.
    pub needed: Vec<String>,
    /// DT_RUNPATH directories, or DT_RPATH ones when there is no RUNPATH (as
    /// the loader does), `$ORIGIN` not yet expanded.
    pub search_dirs: Vec<String>,
    /// EI_CLASS (32 or 64 bit).
    pub class: u8,
    /// e_machine.
    pub machine: u16,
    /// The newest `GLIBC_x.y` version this object defines (set for glibc's
    /// own libc.so.6).
    pub glibc_defined: Option<GlibcVersion>,
    /// The newest `GLIBC_x.y` version this object requires.
    pub glibc_needed: Option<GlibcVersion>,
    /// PT_INTERP: the loader a dynamically linked program names.
    pub interpreter: Option<String>,
}

impl ElfInfo {
    /// Parses an ELF object held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let elf = Elf::parse(bytes).map_err(|e| format!("not a valid ELF object: {e}"))?;
        let search = if elf.runpaths.is_empty() {
            &elf.rpaths
        } else {
            &elf.runpaths
        };
        // The newest of the versions seen so far and the one named at `off`
        // (`None` sorts before every version).
        let newest = |v: Option<GlibcVersion>, off: usize| {
            v.max(elf.dynstrtab.get_at(off).and_then(GlibcVersion::parse))
        };
        let (mut glibc_defined, mut glibc_needed) = (None, None);
        for d in elf.verdef.iter().flat_map(|s| s.iter()) {
            for a in d.iter() {
                glibc_defined = newest(glibc_defined, a.vda_name);
            }
        }
        for n in elf.verneed.iter().flat_map(|s| s.iter()) {
            for a in n.iter() {
                glibc_needed = newest(glibc_needed, a.vna_name);
            }
        }
        Ok(ElfInfo {
            soname: elf.soname.map(str::to_string),
            needed: elf.libraries.iter().map(|s| s.to_string()).collect(),
            search_dirs: search
                .iter()
                .flat_map(|p| p.split(':'))
                .filter(|d| !d.is_empty())
                .map(str::to_string)
                .collect(),
            class: elf.header.e_ident[header::EI_CLASS],
            machine: elf.header.e_machine,
            glibc_defined,
            glibc_needed,
            interpreter: elf.interpreter.map(str::to_string),
        })
    }

    /// The search directories with `$ORIGIN` replaced by `origin` (the
    /// directory of the object's real file).
    pub fn search_dirs_from(&self, origin: &str) -> Vec<String> {
        self.search_dirs
            .iter()
            .map(|d| d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin))
            .collect()
    }
}

/// A file mapped read-only: parsing a large library (MPICH is 41 MB) then
/// touches only the pages goblin reads instead of copying the whole file,
/// which cost ~30 ms per container.
///
/// Only files nobody rewrites while a container starts are mapped: host
/// libraries and programs an admin named (root-owned), and an image's files
/// at createRuntime, before any container process runs. A file truncated
/// meanwhile raises SIGBUS on access, which fails this hook only, so only
/// the image's owner could make their own container fail that way.
#[derive(Debug)]
pub struct Mapped {
    ptr: NonNull<c_void>,
    len: usize,
}

impl Mapped {
    /// Maps the host file `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Self::from_file(&std::fs::File::open(path)?)
    }

    /// Maps the open `file` (a container file opened inside its rootfs).
    pub fn from_file(file: &std::fs::File) -> std::io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "empty file"))?;
        // SAFETY: a fresh private read-only mapping of an open file; it
        // stays valid after the fd closes. Truncation meanwhile: see the
        // type's documentation.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE,
                file,
                0,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(Mapped {
            ptr,
            len: len.get(),
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `open`, once.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

/// The class and machine of the ELF object whose first bytes are `head`
/// (64 bytes are enough), or `None` when it is not ELF.
pub fn class_and_machine(head: &[u8]) -> Option<(u8, u16)> {
    let h = Elf::parse_header(head).ok()?;
    Some((h.e_ident[header::EI_CLASS], h.e_machine))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_libc() -> Vec<u8> {
        let t = crate::libpath::triplet();
        std::fs::read(format!("/lib/{t}/libc.so.6")).expect("the host has glibc")
    }

    #[test]
    fn parses_glibc_version_names() {
        assert_eq!(GlibcVersion::parse("GLIBC_2.34"), Some(GlibcVersion(2, 34)));
        assert_eq!(GlibcVersion::parse("GLIBC_2.2.5"), Some(GlibcVersion(2, 2)));
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(GlibcVersion::parse("GCC_3.0"), None);
        assert!(GlibcVersion(2, 9) < GlibcVersion(2, 34));
        assert_eq!(GlibcVersion(2, 36).to_string(), "2.36");
    }

    #[test]
    fn reads_the_host_libc() {
        let libc = ElfInfo::parse(&host_libc()).unwrap();
        assert_eq!(libc.soname.as_deref(), Some("libc.so.6"));
        // glibc's libc defines every version since 2.0 and names its loader.
        let defined = libc.glibc_defined.expect("libc defines GLIBC_ versions");
        assert!(defined >= GlibcVersion(2, 17), "{defined}");
        assert!(libc.needed.iter().any(|n| n.starts_with("ld-")), "{libc:?}");
        let head = &host_libc()[..64];
        assert_eq!(
            class_and_machine(head),
            Some((libc.class, libc.machine)),
            "header agrees with full parse"
        );
        assert_eq!(class_and_machine(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn mapped_file_reads_like_read() {
        let t = crate::libpath::triplet();
        let path = format!("/lib/{t}/libc.so.6");
        let m = Mapped::open(Path::new(&path)).unwrap();
        assert_eq!(m.bytes(), &host_libc()[..]);
        let f = std::fs::File::open(&path).unwrap();
        assert_eq!(Mapped::from_file(&f).unwrap().bytes(), m.bytes());
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(Mapped::open(empty.path()).is_err());
        assert!(Mapped::open(Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn a_program_needs_a_glibc_version() {
        let ls = ElfInfo::parse(&std::fs::read("/bin/ls").unwrap()).unwrap();
        assert!(ls.needed.contains(&"libc.so.6".to_string()));
        let loader = ls.interpreter.as_deref().expect("ls names its loader");
        assert!(
            loader.starts_with('/') && loader.contains("ld-"),
            "{loader}"
        );
        assert!(ls.glibc_needed.is_some());
        assert!(ls.glibc_defined.is_none());
        let info = ElfInfo {
            search_dirs: vec!["$ORIGIN/../lib".into(), "/opt/x".into()],
            ..Default::default()
        };
        assert_eq!(info.search_dirs_from("/a/bin"), ["/a/bin/../lib", "/opt/x"]);
    }
}
