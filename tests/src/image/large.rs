//! The `large` image: over 300 MB uncompressed in four layers of content
//! generated from a seeded xorshift PRNG, so it is identical on every machine
//! without shipping any data. Layers are compressed at gzip level 1 (speed
//! matters more than size here) and written in parallel by the layout writer.

use std::io::{self, Read};
use std::sync::Arc;

use super::busybox::{base_layer, os_release};
use super::layer::{Entry, Generator, Layer};
use super::oci::ImageSpec;
use super::ImageError;

/// Seed of all generated content; changing it changes every digest.
pub const SEED: u64 = 0x6265_7274_685f_7473; // "berth_ts"

const MIB: u64 = 1 << 20;
/// Big incompressible files: count and size (5 x 30 MiB = 150 MiB).
const BIG_FILES: (u64, u64) = (5, 30 * MIB);
/// Small files: 20 x 25 directories x 40 files = 20,000, 0-6000 bytes each (~60 MB).
const SMALL_TREE: (u64, u64, u64, u64) = (20, 25, 40, 6000);
/// Compressible text files: 10 x 10 MiB.
const TEXT_FILES: (u64, u64) = (10, 10 * MIB);

/// xorshift64* : tiny, fast and plenty for test content.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (0 is remapped, as xorshift would stay at 0 forever).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What a [`Prng`] file contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Random bytes (incompressible).
    Random,
    /// Lines of words from a small vocabulary (compresses roughly 3:1).
    Text,
}

/// Deterministic generated file content.
#[derive(Debug, Clone)]
pub struct Prng {
    /// Seed of this file.
    pub seed: u64,
    /// Length in bytes.
    pub len: u64,
    /// Random or text.
    pub style: Style,
}

impl Generator for Prng {
    fn len(&self) -> u64 {
        self.len
    }
    fn open(&self) -> Box<dyn Read + Send + '_> {
        Box::new(PrngReader {
            rng: XorShift::new(self.seed),
            style: self.style,
            left: self.len,
            buf: Vec::new(),
            pos: 0,
        })
    }
}

/// Generates fixed 64 KiB blocks, so the bytes do not depend on read sizes.
struct PrngReader {
    rng: XorShift,
    style: Style,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

const WORDS: &[&str] = &[
    "berth",
    "container",
    "slurm",
    "squashfs",
    "overlay",
    "namespace",
    "mount",
    "layer",
    "registry",
    "digest",
    "node",
    "task",
    "rank",
    "mpi",
    "gpu",
    "image",
    "manifest",
    "runtime",
    "hook",
    "kernel",
    "cgroup",
    "socket",
    "the",
    "of",
];

impl PrngReader {
    fn refill(&mut self) {
        self.buf.clear();
        self.pos = 0;
        match self.style {
            Style::Random => {
                self.buf.resize(64 * 1024, 0);
                for chunk in self.buf.chunks_exact_mut(8) {
                    chunk.copy_from_slice(&self.rng.next_u64().to_le_bytes());
                }
            }
            Style::Text => {
                while self.buf.len() < 64 * 1024 {
                    let r = self.rng.next_u64();
                    self.buf
                        .extend_from_slice(WORDS[(r % WORDS.len() as u64) as usize].as_bytes());
                    // About one line break per twelve words.
                    self.buf
                        .push(if (r >> 32) % 12 == 0 { b'\n' } else { b' ' });
                }
            }
        }
    }
}

impl Read for PrngReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.buf.len() {
            self.refill();
        }
        let n = out
            .len()
            .min(self.buf.len() - self.pos)
            .min(self.left.min(usize::MAX as u64) as usize);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

fn file(path: &str, seed: u64, len: u64, style: Style) -> Entry {
    Entry::generated(path, Arc::new(Prng { seed, len, style }), 0o644)
}

/// The three generated layers: big random files, a metadata-heavy tree, text.
pub fn generated_layers() -> Vec<Layer> {
    let mut seeds = XorShift::new(SEED);
    let mut big = Layer {
        gzip_level: 1,
        ..Layer::new()
    };
    for i in 0..BIG_FILES.0 {
        big.push(file(
            &format!("/big/blob-{i}"),
            seeds.next_u64(),
            BIG_FILES.1,
            Style::Random,
        ));
    }
    let mut small = Layer {
        gzip_level: 1,
        ..Layer::new()
    };
    let (d1, d2, files, max) = SMALL_TREE;
    for a in 0..d1 {
        for b in 0..d2 {
            for c in 0..files {
                let (seed, len) = (seeds.next_u64(), seeds.next_u64() % max);
                small.push(file(
                    &format!("/small/d{a:02}/e{b:02}/f{c:03}"),
                    seed,
                    len,
                    Style::Random,
                ));
            }
        }
    }
    let mut text = Layer {
        gzip_level: 1,
        ..Layer::new()
    };
    for i in 0..TEXT_FILES.0 {
        text.push(file(
            &format!("/text/part-{i:02}.txt"),
            seeds.next_u64(),
            TEXT_FILES.1,
            Style::Text,
        ));
    }
    vec![big, small, text]
}

/// The `large` image: busybox plus the generated layers.
pub fn spec() -> Result<ImageSpec, ImageError> {
    let mut spec = ImageSpec::new("large", "latest");
    spec.layers.push(base_layer()?);
    spec.layers.extend(generated_layers());
    let release = Entry::file("/etc/os-release", os_release("berth-test-large"), 0o644);
    spec.layers
        .last_mut()
        .expect("generated layers")
        .push(release);
    spec.cmd = Some(vec!["/bin/sh".into()]);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(g: &Prng, chunk: usize) -> Vec<u8> {
        let mut r = g.open();
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn content_is_deterministic_and_independent_of_read_sizes() {
        for style in [Style::Random, Style::Text] {
            let g = Prng {
                seed: 42,
                len: 200_003,
                style,
            };
            let a = read_all(&g, 7);
            assert_eq!(a.len(), 200_003);
            assert_eq!(a, read_all(&g, 65_536 + 13));
            assert_ne!(
                a,
                read_all(
                    &Prng {
                        seed: 43,
                        ..g.clone()
                    },
                    4096
                )
            );
        }
    }

    #[test]
    fn sizes_meet_the_brief() {
        let layers = generated_layers();
        let size = |l: &Layer| -> u64 {
            l.entries
                .iter()
                .map(|e| match &e.kind {
                    crate::image::layer::EntryKind::File(src) => src.open().unwrap().0,
                    _ => 0,
                })
                .sum()
        };
        let sizes: Vec<u64> = layers.iter().map(size).collect();
        assert!(sizes.iter().sum::<u64>() >= 300_000_000, "{sizes:?}");
        assert_eq!(layers[1].entries.len(), 20_000);
        assert!(sizes[1] > 50_000_000 && sizes[1] < 70_000_000, "{sizes:?}");
    }
}
