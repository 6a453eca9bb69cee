//! berth's site configuration for the test cluster: its own store, the plain
//! registry listed as insecure, and the TLS registry's CA trusted.

use std::path::PathBuf;

use crate::registry::RegistryConfig;
use crate::{fsutil, paths};

/// Path of the test site configuration.
pub fn path() -> PathBuf {
    paths::root().join("berth.toml")
}

/// The system store the test cluster's slurmstepd uses.
pub fn store() -> PathBuf {
    paths::root().join("store")
}

/// Writes the site configuration (root-owned, 0644, as berth requires) and
/// installs the test hooks.d it names.
pub fn write() -> std::io::Result<PathBuf> {
    let plain = RegistryConfig::plain();
    let secure = crate::registry::Registry::new(RegistryConfig::secure());
    let ca = secure.ca_file().expect("the secure registry has a CA");
    let text = format!(
        "# Written by berth's test harness.\n\
         hooks_dir = \"{}\"\n\n\
         [store]\nsystem = \"{}\"\n\n\
         [registry]\ninsecure = [\"127.0.0.1:{}\"]\nca_files = [\"{}\"]\n",
        crate::hooks_d::dir().display(),
        store().display(),
        plain.port,
        ca.display()
    );
    fsutil::mkdir(&paths::root(), 0o755)?;
    crate::hooks_d::install().map_err(std::io::Error::other)?;
    fsutil::write_atomic(&path(), text.as_bytes(), 0o644)?;
    Ok(path())
}
