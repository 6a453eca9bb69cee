//! The rendezvous of one step's nodes in a directory of a shared filesystem.
//!
//! Files (every name is known in advance, so nothing lists the directory):
//! - `node.I`: node I arrived; holds that node's nonce, a random token drawn
//!   by this run of the hook;
//! - `release`: written by node 0 once every `node.I` exists; holds the
//!   nonces it saw, one a line;
//! - `.tmp.I`: node I's file being written (every write is a rename); only
//!   node I creates or removes it.
//!
//! A node other than 0 is released when `release` holds its own nonce. Files
//! left by a killed earlier run with the same key can therefore never release
//! anyone (their nonces are not this run's), and node 0 removes them when it
//! arrives; a node whose fresh `node.I` was removed by that reset writes it
//! again. Whoever leaves last removes the directory.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Errors of the rendezvous.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// A file or the directory could not be made, read or removed.
    #[error("launch barrier: cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The step directory is not one berth made (wrong owner, a symlink).
    #[error("launch barrier: {} is not a directory owned by uid {owner}: remove it", path.display())]
    Foreign { path: PathBuf, owner: u32 },
    /// Not every node arrived in time; holds the missing node ids.
    #[error("timed out")]
    Timeout(Vec<u32>),
    /// The container this node waits for is gone (its create was aborted).
    #[error("the container exited while waiting at the launch barrier")]
    Abandoned,
}

/// One node's view of the step directory.
#[derive(Debug)]
pub struct StepDir {
    path: PathBuf,
    fd: OwnedFd,
    node: u32,
    nnodes: u32,
    nonce: String,
}

impl StepDir {
    /// Makes (or opens) `base/key`. It must be a real directory owned by the
    /// owner of `base`: `base` is shared, and root must never follow a link
    /// planted there.
    pub fn open(base: &Path, key: &str, node: u32, nnodes: u32) -> Result<Self, DirError> {
        let path = base.join(key);
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| DirError::Io { what, path, source }
        };
        // Made on first use, private to its owner (root, or the squashed id
        // of a root-squashed NFS export the admin chowned it to).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)
            .map_err(io("create", base))?;
        let owner = std::fs::metadata(base).map_err(io("read", base))?.uid();
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("create", &path)(e)),
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) | Some(libc::ENOTDIR) => DirError::Foreign {
                    path: path.clone(),
                    owner,
                },
                _ => io("open", &path)(e),
            })?;
        let md = file.metadata().map_err(io("read", &path))?;
        if md.uid() != owner {
            return Err(DirError::Foreign { path, owner });
        }
        Ok(StepDir {
            path,
            fd: file.into(),
            node,
            nnodes,
            nonce: nonce(),
        })
    }

    /// The step directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory, reached through its fd so a renamed or
    /// replaced path component cannot redirect us.
    fn at(&self, name: &str) -> PathBuf {
        berth::resolve::fd_path(&self.fd).join(name)
    }

    fn io(&self, what: &'static str, name: &str) -> impl Fn(std::io::Error) -> DirError {
        let path = self.path.join(name);
        move |source| DirError::Io {
            what,
            path: path.clone(),
            source,
        }
    }

    fn remove(&self, name: &str) -> Result<(), DirError> {
        match std::fs::remove_file(self.at(name)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(self.io("remove", name)(e)),
            _ => Ok(()),
        }
    }

    fn read(&self, name: &str) -> Option<String> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.at(name))
            .ok()?;
        let mut text = String::new();
        f.read_to_string(&mut text).ok()?;
        Some(text)
    }

    /// Writes `name` atomically: readers see all of it or nothing.
    fn write(&self, name: &str, text: &str) -> Result<(), DirError> {
        let tmp = format!(".tmp.{}", self.node);
        self.remove(&tmp)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.at(&tmp))
            .map_err(self.io("create", &tmp))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(self.io("write", &tmp))?;
        std::fs::rename(self.at(&tmp), self.at(name)).map_err(self.io("rename", name))
    }

    fn node_file(i: u32) -> String {
        format!("node.{i}")
    }

    /// Node 0's reset: drops the arrivals and release an earlier run with
    /// this key left. Another node's `.tmp.I` is left alone: that node may be
    /// writing it right now, and it removes a stale one itself before writing.
    fn reset(&self) -> Result<(), DirError> {
        self.remove("release")?;
        for i in 0..self.nnodes {
            self.remove(&Self::node_file(i))?;
        }
        Ok(())
    }

    /// Arrives and waits until every node has arrived, polling every `poll`
    /// until `deadline`; `alive` is asked between polls. On every outcome
    /// this node's files are removed, and the directory by the last to leave.
    pub fn rendezvous(
        &self,
        poll: Duration,
        deadline: Instant,
        alive: impl Fn() -> bool,
    ) -> Result<(), DirError> {
        let result = self.wait(poll, deadline, alive);
        let left = self.leave(result.is_ok());
        result.and(left)
    }

    fn wait(
        &self,
        poll: Duration,
        deadline: Instant,
        alive: impl Fn() -> bool,
    ) -> Result<(), DirError> {
        let mine = Self::node_file(self.node);
        if self.node == 0 {
            self.reset()?;
        }
        self.write(&mine, &self.nonce)?;
        // Node 0's record of who arrived: only the others are read again.
        let mut seen: Vec<Option<String>> = vec![None; self.nnodes as usize];
        loop {
            if self.node == 0 {
                for (i, nonce) in seen.iter_mut().enumerate().filter(|(_, n)| n.is_none()) {
                    *nonce = self.read(&Self::node_file(i as u32));
                }
                if seen.iter().all(Option::is_some) {
                    let nonces: Vec<String> = seen.into_iter().flatten().collect();
                    return self.write("release", &(nonces.join("\n") + "\n"));
                }
            } else {
                let released = self
                    .read("release")
                    .is_some_and(|r| r.lines().any(|l| l == self.nonce));
                if released {
                    return Ok(());
                }
                // Node 0's reset may have removed the file we wrote first.
                if self.read(&mine).as_deref() != Some(self.nonce.as_str()) {
                    self.write(&mine, &self.nonce)?;
                }
            }
            if !alive() {
                return Err(DirError::Abandoned);
            }
            if Instant::now() >= deadline {
                let missing = match self.node {
                    0 => (0..self.nnodes)
                        .filter(|i| seen[*i as usize].is_none())
                        .collect(),
                    _ => self.missing(),
                };
                return Err(DirError::Timeout(missing));
            }
            std::thread::sleep(poll);
        }
    }

    /// The node ids whose arrival file is not there (a node that timed out
    /// just before us counts as missing too).
    fn missing(&self) -> Vec<u32> {
        (0..self.nnodes)
            .filter(|i| self.read(&Self::node_file(*i)).is_none())
            .collect()
    }

    /// Removes this node's files; the last node out removes the rest. After a
    /// release, node 0's files (`node.0`, `release`) stay until every other
    /// node has read the release and removed its own file.
    fn leave(&self, released: bool) -> Result<(), DirError> {
        self.remove(&format!(".tmp.{}", self.node))?;
        if !(released && self.node == 0) {
            self.remove(&Self::node_file(self.node))?;
        }
        let others_left = (1..self.nnodes).all(|i| self.read(&Self::node_file(i)).is_none());
        if others_left {
            if released {
                self.remove("release")?;
                self.remove(&Self::node_file(0))?;
            }
            match std::fs::remove_dir(&self.path) {
                // Another node still has files there (it removes the directory),
                // or it was faster than us.
                Err(e) if !matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::ENOENT)) => {
                    return Err(self.io("remove", "")(e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A random token (128 bits from getrandom(2)) identifying this run.
fn nonce() -> String {
    let mut buf = [0u8; 16];
    // SAFETY: getrandom writes at most buf.len() bytes into buf.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n != buf.len() as isize {
        // getrandom cannot fail for 16 bytes once the pool is initialised; fall
        // back to values that still differ between runs.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        buf = (t ^ ((std::process::id() as u128) << 64)).to_le_bytes();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
