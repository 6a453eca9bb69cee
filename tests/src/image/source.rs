//! Where a regular file's bytes come from: memory, a host file, or a
//! generator. Host files and generated content are streamed at serialization
//! time so large files are never held in memory.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use super::ImageError;

/// File content produced on demand (e.g. from a seeded PRNG), streamed into the tar.
pub trait Generator: Send + Sync + fmt::Debug {
    /// Exact number of bytes [`Generator::open`] yields.
    fn len(&self) -> u64;
    /// True when the content is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A fresh reader over the whole content; every call yields the same bytes.
    fn open(&self) -> Box<dyn Read + Send + '_>;
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Small content held in memory.
    Bytes(Arc<[u8]>),
    /// A host file, streamed at serialization time (size checked against its metadata).
    Host(PathBuf),
    /// Generated content, streamed at serialization time.
    Generated(Arc<dyn Generator>),
}

impl FileSource {
    /// Size in bytes and a reader over the content.
    pub fn open(&self) -> Result<(u64, Box<dyn Read + Send + '_>), ImageError> {
        match self {
            FileSource::Bytes(b) => Ok((b.len() as u64, Box::new(&b[..]))),
            FileSource::Host(p) => {
                let f = File::open(p).map_err(ImageError::io("cannot open host file", p))?;
                let len = f
                    .metadata()
                    .map_err(ImageError::io("cannot stat host file", p))?
                    .len();
                Ok((len, Box::new(io::BufReader::with_capacity(1 << 16, f))))
            }
            FileSource::Generated(g) => Ok((g.len(), g.open())),
        }
    }
}
