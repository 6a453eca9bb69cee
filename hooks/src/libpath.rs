//! Finding a shared library by soname the way the dynamic loader does, on the
//! host or inside a container's rootfs: the object's own RUNPATH/RPATH, then
//! the tree's `/etc/ld.so.cache`, then the default directories. Candidates of
//! another ELF class or machine (an i386 library in a biarch directory) are
//! skipped like the loader skips them.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::elf::{class_and_machine, ElfInfo, Mapped};
use crate::inject::Rootfs;

/// A filesystem tree libraries are looked up in.
pub trait Tree {
    /// The file `path` mapped, if readable: only the parts parsed are read.
    fn map(&self, path: &Path) -> Option<Mapped>;
    /// The first 64 bytes of `path` (enough for an ELF header).
    fn head(&self, path: &Path) -> Option<[u8; 64]>;
    /// `path` with every symlink resolved (inside the tree).
    fn real(&self, path: &Path) -> Option<PathBuf>;

    /// What the ELF object `path` declares, if it is one and readable.
    fn elf(&self, path: &Path) -> Option<ElfInfo> {
        ElfInfo::parse(self.map(path)?.bytes()).ok()
    }
}

/// The host's own filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host;

fn head_of(mut f: impl Read) -> Option<[u8; 64]> {
    let mut head = [0u8; 64];
    f.read_exact(&mut head).ok()?;
    Some(head)
}

impl Tree for Host {
    fn map(&self, path: &Path) -> Option<Mapped> {
        Mapped::open(path).ok()
    }
    fn head(&self, path: &Path) -> Option<[u8; 64]> {
        head_of(std::fs::File::open(path).ok()?)
    }
    fn real(&self, path: &Path) -> Option<PathBuf> {
        std::fs::canonicalize(path).ok()
    }
}

impl Tree for Rootfs {
    fn map(&self, path: &Path) -> Option<Mapped> {
        Mapped::from_file(&self.open_file(path).ok()?).ok()
    }
    fn head(&self, path: &Path) -> Option<[u8; 64]> {
        head_of(self.open_file(path).ok()?)
    }
    fn real(&self, path: &Path) -> Option<PathBuf> {
        self.resolve(path)
    }
}

/// This host's multiarch triplet (`x86_64-linux-gnu`, `aarch64-linux-gnu`).
pub fn triplet() -> String {
    format!("{}-linux-gnu", std::env::consts::ARCH)
}

/// The directories the loader searches when nothing else names a library.
pub fn default_dirs() -> Vec<String> {
    let t = triplet();
    vec![
        format!("/lib/{t}"),
        format!("/usr/lib/{t}"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ]
}

/// The (soname, path) entries of an ld.so.cache in glibc's "new" format
/// (`glibc-ld.so.cache1.1`, alone or after the old-format part). Anything
/// unreadable yields no entries: the loader then uses the default dirs too.
pub fn parse_cache(data: &[u8]) -> Vec<(String, String)> {
    const MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
    const HEADER: usize = 48;
    const ENTRY: usize = 24;
    let Some(start) = data.windows(MAGIC.len()).position(|w| w == MAGIC) else {
        return Vec::new();
    };
    let new = &data[start..];
    let u32_at = |off: usize| -> Option<usize> {
        let b = new.get(off..off + 4)?;
        Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    // String offsets are relative to the start of the new-format header.
    let string = |off: usize| -> Option<String> {
        let s = new.get(off..)?;
        let end = s.iter().position(|b| *b == 0)?;
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    };
    let Some(count) = u32_at(20) else {
        return Vec::new();
    };
    (0..count)
        .map_while(|i| {
            let e = HEADER + i * ENTRY;
            Some((string(u32_at(e + 4)?)?, string(u32_at(e + 8)?)?))
        })
        .collect()
}

/// Looks libraries up in one tree for objects of one ELF class and machine.
#[derive(Debug)]
pub struct Finder<'a, T: Tree> {
    tree: &'a T,
    cache: Vec<(String, String)>,
    defaults: Vec<String>,
    class: u8,
    machine: u16,
}

impl<'a, T: Tree> Finder<'a, T> {
    /// True when this finder looks for libraries of `class` and `machine`.
    pub fn is_for(&self, class: u8, machine: u16) -> bool {
        (self.class, self.machine) == (class, machine)
    }

    /// A finder reading the tree's `/etc/ld.so.cache` once.
    pub fn new(tree: &'a T, class: u8, machine: u16) -> Self {
        let cache = tree
            .map(Path::new("/etc/ld.so.cache"))
            .map(|m| parse_cache(m.bytes()))
            .unwrap_or_default();
        Finder {
            tree,
            cache,
            defaults: default_dirs(),
            class,
            machine,
        }
    }

    /// The tree searched.
    pub fn tree(&self) -> &T {
        self.tree
    }

    /// Where the loader would find `soname` for an object whose own search
    /// path is `own_dirs` (path as found, symlinks not resolved).
    pub fn find(&self, soname: &str, own_dirs: &[String]) -> Option<PathBuf> {
        let cached = self
            .cache
            .iter()
            .filter(|(k, _)| k == soname)
            .map(|(_, v)| PathBuf::from(v));
        let in_dir = |d: &String| Path::new(d).join(soname);
        own_dirs
            .iter()
            .map(in_dir)
            .chain(cached)
            .chain(self.defaults.iter().map(in_dir))
            .find(|p| self.fits(p))
    }

    /// Sonames in the cache that start with `prefix` (to name what the
    /// image has instead of a missing library).
    pub fn cached_like(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .cache
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn fits(&self, path: &Path) -> bool {
        self.tree
            .head(path)
            .and_then(|h| class_and_machine(&h))
            .is_some_and(|cm| cm == (self.class, self.machine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfInfo;

    fn host_finder(h: &Host) -> Finder<'_, Host> {
        let ls = ElfInfo::parse(&std::fs::read("/bin/ls").unwrap()).unwrap();
        Finder::new(h, ls.class, ls.machine)
    }

    #[test]
    fn host_cache_lists_libc() {
        let cache = parse_cache(&std::fs::read("/etc/ld.so.cache").unwrap());
        let libc = cache
            .iter()
            .find(|(k, _)| k == "libc.so.6")
            .expect("the host cache lists libc.so.6");
        assert!(libc.1.ends_with("/libc.so.6"), "{libc:?}");
        assert!(parse_cache(b"not a cache").is_empty());
        // A truncated cache gives what it can, never a panic.
        let data = std::fs::read("/etc/ld.so.cache").unwrap();
        let _ = parse_cache(&data[..100.min(data.len())]);
    }

    #[test]
    fn finds_like_the_loader_in_a_rootfs() {
        let h = Host;
        let host = host_finder(&h);
        let libc = host.find("libc.so.6", &[]).expect("host libc");
        // A rootfs with no cache: found in a default dir, through a symlink.
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join(default_dirs()[1].trim_start_matches('/'));
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::copy(&libc, lib.join("libc-2.99.so")).unwrap();
        std::os::unix::fs::symlink("libc-2.99.so", lib.join("libc.so.6")).unwrap();
        // Not ELF: skipped like the loader skips it.
        std::fs::create_dir_all(dir.path().join("opt/own")).unwrap();
        std::fs::write(dir.path().join("opt/own/libc.so.6"), b"garbage").unwrap();
        let root = Rootfs::open(dir.path()).unwrap();
        let f = Finder::new(&root, host.class, host.machine);
        let found = f.find("libc.so.6", &["/opt/own".into()]).unwrap();
        assert_eq!(found, Path::new(&default_dirs()[1]).join("libc.so.6"));
        assert_eq!(
            f.tree().real(&found).unwrap(),
            Path::new(&default_dirs()[1]).join("libc-2.99.so")
        );
        assert!(f.find("libnothere.so.1", &[]).is_none());
        assert!(f.cached_like("libc.so").is_empty());
        // Parsed from the mapping, through the symlink inside the root.
        let info = f.tree().elf(&found).unwrap();
        assert_eq!(info.soname.as_deref(), Some("libc.so.6"));
        // A link to a host ELF file (this test) is re-rooted, where nothing is.
        let exe = std::env::current_exe().unwrap();
        std::os::unix::fs::symlink(exe, dir.path().join("opt/own/libhost.so")).unwrap();
        assert!(f.tree().elf(Path::new("/opt/own/libhost.so")).is_none());
        assert!(f.tree().elf(Path::new("/opt/own/libc.so.6")).is_none());
    }
}
