//! Garbage collection: stale work directories of crashed pulls, half-published
//! files, and (optionally) images no reference points at.

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::{work, Store, StoreError};
use crate::image::digest::Digest;

/// What a collection removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Work directories of dead owners.
    pub stale_work: Vec<String>,
    /// Image ids removed because nothing references them.
    pub unreferenced: Vec<String>,
    /// Squashfs files without metadata (a crash between the two renames).
    pub orphans: Vec<String>,
    /// Images whose metadata is unreadable.
    pub corrupt: Vec<String>,
    /// Temporary files of interrupted writes and lock files of absent images.
    pub leftovers: Vec<String>,
}

/// A temporary file younger than this may still be being written (on this
/// or another node of a shared store); older ones are from a killed writer.
const TMP_GRACE: Duration = Duration::from_secs(3600);

impl Store {
    /// Removes work directories whose owner lock is free. Cheap; every pull
    /// calls it so an interrupted pull never needs manual cleanup.
    pub fn clean_stale_work(&self) -> Result<Vec<String>, StoreError> {
        let mut removed = work::clean_stale(&self.root.join("tmp"))?;
        // RAM staging of this user's crashed pulls (best effort: it may not exist).
        if let Some(ram) = crate::image::convert::trusted_ram_staging_root(false) {
            removed.extend(work::clean_stale(&ram).unwrap_or_default());
        }
        for w in &removed {
            tracing::info!(work = %w, "removed stale work directory");
        }
        Ok(removed)
    }

    /// Full collection; `prune` also deletes images that no reference names.
    pub fn gc(&self, prune: bool) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            stale_work: self.clean_stale_work()?,
            ..Default::default()
        };
        let referenced: HashSet<Digest> = self.refs()?.into_iter().map(|r| r.id).collect();
        let images = self.root.join("images");
        for e in fs::read_dir(&images)
            .map_err(|source| StoreError::Io {
                what: "cannot list",
                path: images.clone(),
                source,
            })?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".sqsh") else {
                continue;
            };
            let Ok(id) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            // Never race a conversion or an rmi: skip images whose lock is held.
            let Ok(l) = self.lock_image(&id, Duration::ZERO) else {
                continue;
            };
            match self.get(&id) {
                Ok(None) => {
                    self.delete_image(&id)?;
                    report.orphans.push(id.to_string());
                }
                Err(StoreError::Corrupt { .. }) => {
                    self.delete_image(&id)?;
                    report.corrupt.push(id.to_string());
                }
                Ok(Some(_)) if prune && !referenced.contains(&id) => {
                    self.delete_image(&id)?;
                    report.unreferenced.push(id.to_string());
                }
                Ok(Some(_)) => {}
                Err(e) => return Err(e),
            }
            l.remove();
        }
        report.leftovers = self.clean_leftovers()?;
        Ok(report)
    }

    /// Removes old temporary files of interrupted [`super::write_atomic`]s
    /// and the lock files of images that do not exist (taken first, so a
    /// conversion in progress keeps its lock).
    fn clean_leftovers(&self) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        for sub in ["images", "refs"] {
            let dir = self.root.join(sub);
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let old = || {
                    e.metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > TMP_GRACE)
                };
                if name.ends_with(super::TMP_SUFFIX) && old() && fs::remove_file(e.path()).is_ok() {
                    removed.push(format!("{sub}/{name}"));
                }
                // Metadata without its squashfs (corrupt or from an interrupted
                // delete) describes nothing.
                let id = name
                    .strip_suffix(".json")
                    .filter(|_| sub == "images")
                    .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
                if let Some(id) = id.filter(|id| !self.image_file(id).exists()) {
                    if let Ok(l) = self.lock_image(&id, Duration::ZERO) {
                        if !self.image_file(&id).exists() {
                            self.delete_image(&id)?;
                            removed.push(format!("{sub}/{name}"));
                        }
                        l.remove();
                    }
                }
            }
        }
        let locks = self.root.join("locks");
        for e in fs::read_dir(&locks).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".lock") else {
                continue;
            };
            let Ok(id) = Digest::parse(&format!("sha256:{hex}")) else {
                continue;
            };
            if self.image_file(&id).exists() {
                continue;
            }
            if let Ok(l) = self.lock_image(&id, Duration::ZERO) {
                // Re-check under the lock: a conversion may have published it.
                if !self.image_file(&id).exists() {
                    l.remove();
                    removed.push(format!("locks/{name}"));
                }
            }
        }
        Ok(removed)
    }
}
