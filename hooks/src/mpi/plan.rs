//! Deciding what the MPI hook binds, before anything is mounted: each host
//! MPI library over the image's library of the same soname (after the ABI
//! check), the dependency libraries and the host libraries' own dependencies
//! that the image lacks into [`LIB_DIR`], then glibc when needed.

use std::path::{Path, PathBuf};

use super::abi::LibVersion;
use super::{glibc, Config, MpiError};
use crate::elf::{ElfInfo, GlibcVersion, Mapped};
use crate::inject::Rootfs;
use crate::libpath::{Finder, Host, Tree};

/// Where libraries the image does not have are added, then made known to
/// the loader through the image's ld.so.conf and `ldconfig`.
pub const LIB_DIR: &str = "/opt/berth/mpi/lib";

/// Everything the hook will bind, as (host file, container path).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Host MPI (and dependency) libraries over the image's (files that exist).
    pub replace: Vec<(PathBuf, PathBuf)>,
    /// Libraries added under [`LIB_DIR`] (new files: need `ldconfig`).
    pub add: Vec<(PathBuf, PathBuf)>,
    /// The host's glibc over the image's (see [`glibc`]).
    pub glibc: Vec<(PathBuf, PathBuf)>,
}

/// A host library read once.
struct HostLib {
    real: PathBuf,
    info: ElfInfo,
}

impl HostLib {
    fn load(path: &Path, what: &str) -> Result<Self, MpiError> {
        let real = std::fs::canonicalize(path).map_err(|e| {
            MpiError::Config(format!(
                "{what} {} does not exist on the host ({e}): fix the hook's env",
                path.display()
            ))
        })?;
        let mapped = Mapped::open(&real)
            .map_err(|e| MpiError::Config(format!("cannot read {what} {}: {e}", real.display())))?;
        let info = ElfInfo::parse(mapped.bytes())
            .map_err(|e| MpiError::Config(format!("{what} {}: {e}", real.display())))?;
        Ok(HostLib { real, info })
    }

    /// Its soname, or the name it was given by when it has none.
    fn soname(&self, given: &Path) -> String {
        self.info.soname.clone().unwrap_or_else(|| {
            given
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    fn origin(&self) -> String {
        self.real
            .parent()
            .map_or("/".into(), |p| p.to_string_lossy().into_owned())
    }
}

/// Plans the injection of `cfg`'s libraries into `root`.
pub fn plan(cfg: &Config, root: &Rootfs) -> Result<Plan, MpiError> {
    let libs = cfg
        .libs
        .iter()
        .map(|p| Ok((p, HostLib::load(p, "host MPI library")?)))
        .collect::<Result<Vec<_>, MpiError>>()?;
    let (class, machine) = libs
        .first()
        .map(|(_, l)| (l.info.class, l.info.machine))
        .ok_or_else(|| {
            MpiError::Config(
                "MPI_LIBS is empty: list the host MPI libraries in the hook's env".into(),
            )
        })?;
    let host = Finder::new(&Host, class, machine);
    let image = Finder::new(root, class, machine);
    let mut plan = Plan::default();
    let mut provided: Vec<String> = Vec::new();
    let mut injected: Vec<HostLib> = Vec::new();
    for (path, lib) in libs {
        let soname = lib.soname(path);
        let target = image_library(&lib, &soname, &image, cfg)?;
        plan.replace.push((lib.real.clone(), target));
        provided.push(soname);
        injected.push(lib);
    }
    for path in &cfg.dependency_libs {
        let lib = HostLib::load(path, "MPI dependency library")?;
        let soname = lib.soname(path);
        // Over the image's copy when it has one, so the loader cannot pick
        // the image's (no ABI check: the admin asked for this exact file).
        match image.find(&soname, &[]) {
            Some(found) => {
                let real = image.tree().real(&found).unwrap_or(found);
                plan.replace.push((lib.real.clone(), real));
            }
            None => plan
                .add
                .push((lib.real.clone(), Path::new(LIB_DIR).join(&soname))),
        }
        provided.push(soname);
        injected.push(lib);
    }
    // The libraries' own dependencies the image lacks, transitively.
    let mut next = 0;
    while next < injected.len() {
        let own_dirs = injected[next]
            .info
            .search_dirs_from(&injected[next].origin());
        let needed = injected[next].info.needed.clone();
        let from = injected[next].real.clone();
        next += 1;
        for soname in needed {
            if provided.contains(&soname)
                || glibc::is_glibc(&soname)
                || image.find(&soname, &[]).is_some()
            {
                continue;
            }
            let found = host.find(&soname, &own_dirs).ok_or_else(|| {
                MpiError::Config(format!(
                    "{} needs {soname}, which is found neither in the image nor on the host: add it to MPI_DEPENDENCY_LIBS",
                    from.display()
                ))
            })?;
            let lib = HostLib::load(&found, "library")?;
            plan.add
                .push((lib.real.clone(), Path::new(LIB_DIR).join(&soname)));
            provided.push(soname);
            injected.push(lib);
        }
    }
    let required: Option<GlibcVersion> = injected.iter().filter_map(|l| l.info.glibc_needed).max();
    plan.glibc = glibc::plan(required, &host, &image)?;
    Ok(plan)
}

/// The image's file that host library `lib` replaces, after the ABI check.
fn image_library(
    lib: &HostLib,
    soname: &str,
    image: &Finder<'_, Rootfs>,
    cfg: &Config,
) -> Result<PathBuf, MpiError> {
    let host_version = LibVersion::of(&lib.real).ok_or_else(|| {
        MpiError::Config(format!(
            "cannot tell the version of host MPI library {} from its file name (want libNAME.so.MAJOR.MINOR.PATCH): list the real file in MPI_LIBS",
            lib.real.display()
        ))
    })?;
    let Some(found) = image.find(soname, &[]) else {
        let base = soname.split(".so.").next().unwrap_or(soname);
        let similar = image.cached_like(&format!("{base}.so"));
        let has = if similar.is_empty() {
            String::new()
        } else {
            format!(" (it has {})", similar.join(", "))
        };
        return Err(MpiError::Missing(format!(
            "the image has no {soname}{has} for the host's {} ({host_version}) to replace: use an image built with an MPI of the same ABI",
            lib.real.display()
        )));
    };
    let real = image.tree().real(&found).unwrap_or(found);
    let image_version = LibVersion::of(&real).ok_or_else(|| {
        MpiError::Incompatible(format!(
            "cannot tell the version of the image's {} from its file name, so the host's {} ({host_version}) cannot be checked against it",
            real.display(),
            lib.real.display()
        ))
    })?;
    if let Some(why) = cfg.compat.violation(host_version, image_version) {
        return Err(MpiError::Incompatible(format!(
            "the host's MPI library {} ({host_version}) is not ABI-compatible with the image's {} ({image_version}): {why} (rule {}): use an image built with a compatible MPI",
            lib.real.display(),
            real.display(),
            cfg.compat
        )));
    }
    Ok(real)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
