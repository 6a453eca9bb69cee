//! `berth pull`: resolve the reference to a manifest for this host, and unless
//! the store already has that image, download the layers in parallel (each
//! verified while it streams) while applying finished ones in order, then
//! squash and publish under the image lock so concurrent pulls convert once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::auth::{self, Credentials};
use super::convert::{Converter, LayerFile, Verify};
use super::digest::Digest;
use super::manifest::{self, Document};
use super::progress::Progress;
use super::reference::Reference;
use super::registry::Client;
use super::{Cause, ImageError};
use crate::site::SiteConfig;
use crate::store::{ImageMeta, Store};

/// Options of a pull.
#[derive(Debug, Default, Clone)]
pub struct PullOpts {
    /// Explicit credentials (else the auth files are read).
    pub creds: Option<Credentials>,
    /// Extra CA files.
    pub ca_files: Vec<PathBuf>,
    /// Unpack without root privileges.
    pub rootless: bool,
}

/// What a pull did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PullOutcome {
    /// The canonical reference.
    pub reference: String,
    /// The manifest (or index) digest the reference resolved to.
    pub manifest: Digest,
    /// The image.
    pub image: ImageMeta,
    /// True when this process converted it (false: it was already there,
    /// or another process converted it while this one waited).
    pub converted: bool,
}

/// Pulls `r` into `store`.
pub fn pull(
    r: &Reference,
    store: &Store,
    site: &SiteConfig,
    opts: &PullOpts,
    progress: &Progress,
) -> Result<PullOutcome, ImageError> {
    pull_inner(r, store, site, opts, progress).map_err(|c| c.at("pull", r))
}

fn pull_inner(
    r: &Reference,
    store: &Store,
    site: &SiteConfig,
    opts: &PullOpts,
    progress: &Progress,
) -> Result<PullOutcome, Cause> {
    if let Err(e) = store.clean_stale_work() {
        tracing::warn!(error = %e, "cannot clean stale work directories");
    }
    let creds = opts.creds.clone().or_else(|| auth::lookup(&r.registry));
    let client = Client::new(r, &site.registry, &opts.ca_files, creds)?;
    let (bytes, top_digest) = client.manifest(&r.manifest_ref())?;
    let m = match manifest::parse(&bytes).map_err(Cause::Invalid)? {
        Document::Manifest(m) => m,
        Document::Index(list) => {
            let d = manifest::select_platform(&list).map_err(Cause::Invalid)?;
            let (bytes, _) = client.manifest(&d.digest.to_string())?;
            match manifest::parse(&bytes).map_err(Cause::Invalid)? {
                Document::Manifest(m) => m,
                Document::Index(_) => {
                    return Err(Cause::Invalid(
                        "an index entry points at another index".into(),
                    ))
                }
            }
        }
    };
    let id = m.config.digest.clone();
    let reference = r.to_string();
    let done = |image: ImageMeta, converted| -> Result<PullOutcome, Cause> {
        store.tag(&reference, &image.id)?;
        progress.stage("done", &image.id.to_string());
        Ok(PullOutcome {
            reference: reference.clone(),
            manifest: top_digest.clone(),
            image,
            converted,
        })
    };
    if let Some(image) = store.get(&id)? {
        return done(image, false);
    }
    let _lock = store.lock_image(&id, Duration::from_secs(site.store.lock_timeout_s))?;
    if let Some(image) = store.get(&id)? {
        return done(image, false); // another process converted it while we waited
    }
    let work = store.work_dir()?;
    let config_bytes = client.blob_bytes(&id)?;
    let (config, platform) = manifest::parse_config(&config_bytes).map_err(Cause::Invalid)?;
    let meta = ImageMeta {
        id: id.clone(),
        manifest: Some(top_digest.clone()),
        size: 0,
        created: 0,
        platform,
        config,
    };

    let layers = &m.layers;
    let next = AtomicUsize::new(0);
    let cancel = AtomicBool::new(false);
    let converter = Converter {
        store,
        site,
        progress,
        rootless: opts.rootless,
        compressed_bytes: layers.iter().fold(0u64, |a, l| a.saturating_add(l.size)),
    };
    let image = std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(usize, Result<LayerFile, Cause>)>();
        for _ in 0..site.registry.parallel_downloads.min(layers.len()).max(1) {
            let (tx, client, next, cancel, work) = (tx.clone(), &client, &next, &cancel, &work);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= layers.len() || cancel.load(Ordering::SeqCst) {
                    break;
                }
                let l = &layers[i];
                let path = work.path().join(format!("layer-{i}"));
                let bar = progress.layer(&l.digest, l.size);
                let r = client
                    .blob_to_file(&l.digest, l.size, &path, &|n| {
                        bar.inc(n);
                        !cancel.load(Ordering::Relaxed)
                    })
                    .map(|()| LayerFile {
                        digest: l.digest.clone(),
                        path,
                        verify: Verify::Done,
                        remove_after: true,
                    })
                    .map_err(Cause::from);
                bar.finish();
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Hand layers to the converter in order as they arrive.
        let mut slots: Vec<Option<Result<LayerFile, Cause>>> =
            (0..layers.len()).map(|_| None).collect();
        let mut want = 0;
        let ordered = std::iter::from_fn(|| {
            if want >= slots.len() {
                return None;
            }
            while slots[want].is_none() {
                match rx.recv() {
                    Ok((i, r)) => slots[i] = Some(r),
                    Err(_) => {
                        return Some(Err(Cause::Invalid("layer download threads stopped".into())))
                    }
                }
            }
            want += 1;
            slots[want - 1].take()
        });
        let r = converter.convert(&work, ordered, meta);
        if r.is_err() {
            cancel.store(true, Ordering::SeqCst);
        }
        r
    });
    done(image?, true)
}
