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
}

impl Store {
    /// Removes work directories whose owner lock is free. Cheap; every pull
    /// calls it so an interrupted pull never needs manual cleanup.
    pub fn clean_stale_work(&self) -> Result<Vec<String>, StoreError> {
        let mut removed = work::clean_stale(&self.root.join("tmp"))?;
        // RAM staging of this user's crashed pulls (best effort: it may not exist).
        if let Some(ram) = crate::image::convert::trusted_ram_staging_root() {
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
            if self.get(&id)?.is_none() {
                self.delete_image(&id)?;
                report.orphans.push(id.to_string());
            } else if prune && !referenced.contains(&id) {
                self.delete_image(&id)?;
                report.unreferenced.push(id.to_string());
            }
            l.remove();
        }
        Ok(report)
    }
}
