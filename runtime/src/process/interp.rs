//! What the kernel will load besides the program itself: the `#!` line's
//! interpreter of a script, the program loader (ELF `PT_INTERP`) of a
//! dynamic executable. Checked before "created", because a missing one makes
//! execve fail with a bare ENOENT ("no such file or directory" about a file
//! that plainly exists), and after `start` nobody is waiting to be told.

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How a program names the next file execve loads.
#[derive(Debug, PartialEq, Eq)]
pub enum Interp {
    /// A script's `#!` interpreter.
    Script(PathBuf),
    /// A dynamic executable's program loader.
    Loader(PathBuf),
}

impl Interp {
    /// The file named.
    pub fn path(&self) -> &Path {
        match self {
            Interp::Script(p) | Interp::Loader(p) => p,
        }
    }
}

const PT_INTERP: u32 = 3;
/// execve reads this much of a program for `#!` (BINPRM_BUF_SIZE).
const HEAD: usize = 256;

/// The interpreter or loader `f` names, if any. A file too short or too odd
/// to tell gives `None`: execve will then say what it thinks.
pub fn of(f: &std::fs::File) -> Option<Interp> {
    let mut head = [0u8; HEAD];
    let n = f.read_at(&mut head, 0).ok()?;
    let head = &head[..n];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|&c| c == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?;
        return text
            .split_ascii_whitespace()
            .next()
            .map(|i| Interp::Script(i.into()));
    }
    elf_loader(f, head).map(Interp::Loader)
}

/// The `PT_INTERP` path of an ELF file whose first bytes are `head`.
fn elf_loader(f: &std::fs::File, head: &[u8]) -> Option<PathBuf> {
    if head.len() < 64 || &head[..4] != b"\x7fELF" {
        return None;
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match head[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let int = |b: &[u8]| -> u64 {
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            let shift = if little { i } else { b.len() - 1 - i } * 8;
            v |= (*x as u64) << shift;
        }
        v
    };
    // (e_phoff, e_phentsize, e_phnum) and, inside a header, (p_type,
    // p_offset, p_filesz), at their ELF32/ELF64 offsets.
    let (phoff, phentsize, phnum) = if wide {
        (int(&head[32..40]), int(&head[54..56]), int(&head[56..58]))
    } else {
        (int(&head[28..32]), int(&head[42..44]), int(&head[44..46]))
    };
    let (min, off, size) = if wide {
        (56, 8..16, 32..40)
    } else {
        (32, 4..8, 16..20)
    };
    if phentsize < min || phnum == 0 || phnum > 256 {
        return None;
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    f.read_exact_at(&mut table, phoff).ok()?;
    let ph = table
        .chunks_exact(phentsize as usize)
        .find(|ph| int(&ph[..4]) == PT_INTERP as u64)?;
    let len = int(&ph[size]).min(4096) as usize;
    let mut path = vec![0u8; len];
    f.read_exact_at(&mut path, int(&ph[off])).ok()?;
    let end = path.iter().position(|&c| c == 0).unwrap_or(len);
    path.truncate(end);
    Some(PathBuf::from(
        <std::ffi::OsString as OsStringExt>::from_vec(path),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, bytes).unwrap();
        f
    }

    #[test]
    fn script_names_its_interpreter() {
        let f = file(b"#!/usr/bin/env  python3 -u\nprint(1)\n");
        assert_eq!(of(&f), Some(Interp::Script("/usr/bin/env".into())));
        assert_eq!(of(&file(b"#!\n")), None);
    }

    #[test]
    fn dynamic_executable_names_its_loader() {
        // The test binary itself is a dynamic executable (the static build
        // is made by scripts/build-release, not by cargo test).
        let me = std::fs::File::open("/proc/self/exe").unwrap();
        let Some(Interp::Loader(l)) = of(&me) else {
            panic!("no loader found in the test binary")
        };
        assert!(l.is_absolute() && l.exists(), "{l:?}");
    }

    #[test]
    fn static_or_odd_files_name_nothing() {
        assert_eq!(of(&file(b"")), None);
        assert_eq!(of(&file(b"plain text, no #! line")), None);
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        // No program headers at all: nothing to load.
        assert_eq!(of(&file(&elf)), None);
    }

    #[test]
    fn elf32_big_endian_loader_is_read() {
        // A minimal ELF32 MSB header with one PT_INTERP at offset 52.
        let mut b = vec![0u8; 52 + 32];
        b[..6].copy_from_slice(b"\x7fELF\x01\x02");
        b[28..32].copy_from_slice(&52u32.to_be_bytes()); // e_phoff
        b[42..44].copy_from_slice(&32u16.to_be_bytes()); // e_phentsize
        b[44..46].copy_from_slice(&1u16.to_be_bytes()); // e_phnum
        let interp = b"/lib/ld.so.1\0";
        let at = b.len() as u32;
        b[52..56].copy_from_slice(&PT_INTERP.to_be_bytes());
        b[56..60].copy_from_slice(&at.to_be_bytes()); // p_offset
        b[68..72].copy_from_slice(&(interp.len() as u32).to_be_bytes()); // p_filesz
        b.extend_from_slice(interp);
        assert_eq!(of(&file(&b)), Some(Interp::Loader("/lib/ld.so.1".into())));
    }
}
