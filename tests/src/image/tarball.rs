//! Deterministic tar headers shared by layers and archives.
//!
//! Every header carries the fixed mtime, explicit ids and no user/group names,
//! so nothing about the build host or the time of the build leaks into digests.

use std::io::{self, Read, Write};

use tar::{Builder, EntryType, Header};

use super::FIXED_MTIME;

/// A GNU header (long names and link targets go into GNU extension records)
/// with fixed mtime and the given type, mode, owner and size.
pub(crate) fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(FIXED_MTIME);
    h
}

/// Appends a root-owned 0755 directory.
pub(crate) fn append_dir<W: Write>(b: &mut Builder<W>, name: &str) -> io::Result<()> {
    let mut h = header(EntryType::Directory, 0o755, 0, 0, 0);
    b.append_data(&mut h, dir_name(name), io::empty())
}

/// Appends a root-owned 0644 file from memory.
pub(crate) fn append_bytes<W: Write>(
    b: &mut Builder<W>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let mut h = header(EntryType::Regular, 0o644, 0, 0, data.len() as u64);
    b.append_data(&mut h, name, data)
}

/// Appends a root-owned 0644 file of exactly `size` bytes read from `data`.
///
/// Fails if `data` yields a different length: the header is already written,
/// so a short read would silently corrupt every entry after it.
pub(crate) fn append_reader<W: Write, R: Read>(
    b: &mut Builder<W>,
    name: &str,
    size: u64,
    data: R,
) -> io::Result<()> {
    let mut h = header(EntryType::Regular, 0o644, 0, 0, size);
    append_exact(b, &mut h, name, size, data)
}

/// Appends an entry whose data must be exactly `size` bytes of `data`.
pub(crate) fn append_exact<W: Write, R: Read>(
    b: &mut Builder<W>,
    h: &mut Header,
    name: &str,
    size: u64,
    data: R,
) -> io::Result<()> {
    let mut counted = CountingReader {
        inner: data.take(size),
        count: 0,
    };
    b.append_data(h, name, &mut counted)?;
    if counted.count != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{name}: expected {size} bytes but the source gave {} (did it change during the build?)", counted.count),
        ));
    }
    Ok(())
}

/// Appends a PAX extended header (`SCHILY.xattr.*` records and the like) that
/// applies to the next entry. The tar crate's builder has no API for this.
pub(crate) fn append_pax<W: Write>(
    b: &mut Builder<W>,
    records: &[(String, Vec<u8>)],
) -> io::Result<()> {
    let mut data = Vec::new();
    for (key, value) in records {
        // A record is "<len> <key>=<value>\n" where <len> counts itself too,
        // so grow the length until its own digits fit.
        let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = header(EntryType::XHeader, 0o644, 0, 0, data.len() as u64);
    b.append_data(&mut h, "PaxHeaders/entry", &data[..])
}

/// Tar convention: directory names end with a slash.
pub(crate) fn dir_name(name: &str) -> String {
    if name.ends_with('/') {
        name.to_string()
    } else {
        format!("{name}/")
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}
