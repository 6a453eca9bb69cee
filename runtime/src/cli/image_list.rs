//! `images`, `inspect` and `rmi`.

use std::time::Duration;

use super::image::{find, stores, Common};
use crate::image::reference::Reference;
use crate::site::SiteConfig;

#[derive(serde::Serialize)]
struct Listed {
    references: Vec<String>,
    store: String,
    #[serde(flatten)]
    image: crate::store::ImageMeta,
}

fn listing(site: &SiteConfig, common: &Common) -> Result<Vec<Listed>, String> {
    let (_, read) = stores(site, common)?;
    let mut out = Vec::new();
    for st in &read {
        let refs = st.refs().map_err(|e| e.to_string())?;
        for image in st.list().map_err(|e| e.to_string())? {
            let references = refs
                .iter()
                .filter(|r| r.id == image.id)
                .map(|r| r.reference.clone())
                .collect();
            out.push(Listed {
                references,
                store: st.root().display().to_string(),
                image,
            });
        }
    }
    Ok(out)
}

/// `berth images`.
pub fn images(site: &SiteConfig, common: &Common) -> Result<i32, String> {
    let list = listing(site, common)?;
    if common.json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&list).expect("serializes")
        );
        return Ok(0);
    }
    crate::outln!("{:<60} {:<14} {:>10}", "REFERENCE", "IMAGE ID", "SIZE");
    for l in list {
        let size = format!("{:.1} MB", l.image.size as f64 / 1e6);
        let refs = if l.references.is_empty() {
            vec!["<none>".to_string()]
        } else {
            l.references
        };
        for r in refs {
            crate::outln!("{:<60} {:<14} {:>10}", r, l.image.id.short(), size);
        }
    }
    Ok(0)
}

/// `berth inspect`.
pub fn inspect(site: &SiteConfig, common: &Common, name: &str) -> Result<i32, String> {
    let (_, read) = stores(site, common)?;
    let (_, meta) = find(&read, name)?.ok_or_else(|| {
        format!("inspect {name}: not in the image store: run `berth pull {name}`")
    })?;
    let list = listing(site, common)?;
    let l = list
        .into_iter()
        .find(|l| l.image.id == meta.id)
        .ok_or_else(|| format!("inspect {name}: vanished while reading"))?;
    crate::outln!("{}", serde_json::to_string_pretty(&l).expect("serializes"));
    Ok(0)
}

/// `berth rmi`: a reference loses its name, and the image goes once unnamed;
/// an id removes the image and every name of it.
pub fn rmi(site: &SiteConfig, common: &Common, names: &[String]) -> Result<i32, String> {
    let (write, _) = stores(site, common)?;
    let timeout = Duration::from_secs(site.store.lock_timeout_s);
    for name in names {
        let fail = |e: &dyn std::fmt::Display| format!("rmi {name}: {e}");
        let (_, meta) = find(std::slice::from_ref(&write), name)?
            .ok_or_else(|| fail(&"not in the image store"))?;
        let by_ref = Reference::parse(name)
            .ok()
            .map(|r| r.to_string())
            .filter(|r| write.lookup(r).ok().flatten().is_some());
        let lock = write.lock_image(&meta.id, timeout).map_err(|e| fail(&e))?;
        if let Some(r) = &by_ref {
            write.untag(r).map_err(|e| fail(&e))?;
        }
        let left = write
            .refs()
            .map_err(|e| fail(&e))?
            .iter()
            .any(|r| r.id == meta.id);
        if by_ref.is_none() || !left {
            write.delete_image(&meta.id).map_err(|e| fail(&e))?;
            crate::outln!("deleted {}", meta.id);
        } else {
            crate::outln!("untagged {}", by_ref.unwrap_or_default());
        }
        drop(lock);
    }
    Ok(0)
}
