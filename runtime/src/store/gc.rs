//! Garbage collection: stale work directories of crashed pulls, half-published
//! files, and (optionally) images no reference points at.

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::{lock, work, Store, StoreError};
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
        let tmp = self.root.join("tmp");
        let mut removed = Vec::new();
        let entries = fs::read_dir(&tmp).map_err(|source| StoreError::Io {
            what: "cannot list",
            path: tmp.clone(),
            source,
        })?;
        let names: HashSet<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        for name in &names {
            if let Some(work) = name.strip_suffix(".lock") {
                let lp = tmp.join(name);
                if let Ok(Some(l)) = lock::try_lock(&lp) {
                    let _ = work::remove_tree(&tmp.join(work));
                    l.remove();
                    removed.push(work.to_string());
                }
            } else if !tmp.join(format!("{name}.lock")).exists() {
                // A directory without a lock file: its owner died after unlocking
                // (or before creating it); nobody can own it.
                let _ = work::remove_tree(&tmp.join(name));
                removed.push(name.clone());
            }
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
