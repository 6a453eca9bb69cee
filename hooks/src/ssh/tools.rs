//! The host's dropbear server and client made runnable in any image: the two
//! binaries, their ELF library closure and the host's dynamic loader are
//! bound under [`DIR`], and every program is started through that loader
//! with `--library-path`, so nothing of the image's own libc (or its absence,
//! as in busybox) matters and the image's library paths are left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::elf::{ElfInfo, Mapped};
use crate::inject::{Access, InjectError, Rootfs};
use crate::libpath::{Finder, Host};

/// Where the SSH tools live in the container.
pub const DIR: &str = "/opt/berth/ssh";

/// Errors installing the tools.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// A binary or library of the host cannot be read or parsed.
    #[error("{}: {reason}", path.display())]
    Elf { path: PathBuf, reason: String },
    /// A needed library is nowhere the loader would look.
    #[error("{} needs {soname}, which the host's loader cannot find: reinstall dropbear-bin's dependencies", path.display())]
    NotFound { path: PathBuf, soname: String },
    /// Binding or writing in the container failed.
    #[error(transparent)]
    Inject(#[from] InjectError),
}

/// A container path under [`DIR`].
pub fn at(rel: &str) -> PathBuf {
    Path::new(DIR).join(rel)
}

/// How to run one of the installed programs: the loader, its arguments and
/// the program, all container paths.
#[derive(Debug, Clone)]
pub struct Installed {
    /// The loader's container path.
    pub loader: PathBuf,
}

impl Installed {
    /// The argv that runs installed program `name` with `args`.
    pub fn argv(&self, name: &str, args: &[String]) -> Vec<String> {
        let mut v = vec![
            self.loader.display().to_string(),
            "--library-path".into(),
            at("lib").display().to_string(),
            at(&format!("bin/{name}")).display().to_string(),
        ];
        v.extend(args.iter().cloned());
        v
    }
}

/// The host files a set of programs needs: library file names (as the
/// programs ask for them) to real host paths, and the loader's name.
#[derive(Debug, Default)]
pub struct Closure {
    pub libs: BTreeMap<String, PathBuf>,
    pub loader: String,
}

fn elf_err(path: &Path) -> impl Fn(String) -> ToolError + '_ {
    move |reason| ToolError::Elf {
        path: path.to_path_buf(),
        reason,
    }
}

/// `path` with every symlink resolved.
fn canonical(path: &Path) -> Result<PathBuf, ToolError> {
    std::fs::canonicalize(path).map_err(|e| elf_err(path)(e.to_string()))
}

/// What the ELF object `path` declares, from the pages the parse touches.
fn parse(path: &Path) -> Result<ElfInfo, ToolError> {
    let map = Mapped::open(path).map_err(|e| elf_err(path)(e.to_string()))?;
    ElfInfo::parse(map.bytes()).map_err(elf_err(path))
}

/// The library closure of `programs` (host paths), resolved like the host's
/// loader does (RUNPATH, ld.so.cache, default directories).
pub fn closure(programs: &[&Path]) -> Result<Closure, ToolError> {
    let mut out = Closure::default();
    // Real paths, each resolved once before it is queued, and whether it is
    // one of `programs`.
    let mut queue = programs
        .iter()
        .map(|p| Ok((canonical(p)?, true)))
        .collect::<Result<Vec<_>, ToolError>>()?;
    let mut seen = std::collections::BTreeSet::new();
    // One finder (one parse of ld.so.cache) per ELF class and machine.
    let mut finders: Vec<Finder<'_, Host>> = Vec::new();
    while let Some((real, program)) = queue.pop() {
        if !seen.insert(real.clone()) {
            continue;
        }
        let info = parse(&real)?;
        if program {
            let interp = info
                .interpreter
                .as_deref()
                .ok_or_else(|| elf_err(&real)("not a dynamically linked program".into()))?;
            let name = interp.rsplit('/').next().unwrap_or(interp).to_string();
            if !out.libs.contains_key(&name) {
                out.libs.insert(name.clone(), canonical(Path::new(interp))?);
            }
            out.loader = name;
        }
        let origin = real
            .parent()
            .unwrap_or(Path::new("/"))
            .display()
            .to_string();
        let i = match finders
            .iter()
            .position(|f| f.is_for(info.class, info.machine))
        {
            Some(i) => i,
            None => {
                finders.push(Finder::new(&Host, info.class, info.machine));
                finders.len() - 1
            }
        };
        let finder = &finders[i];
        for soname in &info.needed {
            if out.libs.contains_key(soname) {
                continue;
            }
            let found = finder
                .find(soname, &info.search_dirs_from(&origin))
                .ok_or_else(|| ToolError::NotFound {
                    path: real.clone(),
                    soname: soname.clone(),
                })?;
            let lib = canonical(&found)?;
            out.libs.insert(soname.clone(), lib.clone());
            queue.push((lib, false));
        }
    }
    Ok(out)
}

/// Binds `programs` (name, host path) and their closure into the container.
pub fn install(root: &Rootfs, programs: &[(&str, &Path)]) -> Result<Installed, ToolError> {
    let paths: Vec<&Path> = programs.iter().map(|(_, p)| *p).collect();
    let c = closure(&paths)?;
    for (name, host) in programs {
        root.bind(host, &at(&format!("bin/{name}")), Access::ReadOnly)?;
    }
    for (name, host) in &c.libs {
        root.bind(host, &at(&format!("lib/{name}")), Access::ReadOnly)?;
    }
    Ok(Installed {
        loader: at(&format!("lib/{}", c.loader)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_of_dropbear_has_its_libraries_and_the_loader() {
        let c = closure(&[
            Path::new("/usr/sbin/dropbear"),
            Path::new("/usr/bin/dbclient"),
        ])
        .expect("dropbear-bin is installed (scripts/debian-packages)");
        assert!(c.loader.starts_with("ld-"), "{}", c.loader);
        for lib in [
            c.loader.as_str(),
            "libc.so.6",
            "libtomcrypt.so.1",
            "libz.so.1",
        ] {
            let path = c.libs.get(lib).unwrap_or_else(|| panic!("{lib} in {c:?}"));
            assert!(path.is_absolute() && path.is_file(), "{path:?}");
        }
        // libtomcrypt's own dependency comes in through the closure.
        assert!(c.libs.contains_key("libgmp.so.10"), "{c:?}");
        let i = Installed {
            loader: at(&format!("lib/{}", c.loader)),
        };
        assert_eq!(
            i.argv("dbclient", &["-V".into()])[1..],
            [
                "--library-path",
                "/opt/berth/ssh/lib",
                "/opt/berth/ssh/bin/dbclient",
                "-V"
            ]
        );
    }

    #[test]
    fn a_program_named_through_a_symlink_gets_its_loader() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("db");
        std::os::unix::fs::symlink("/usr/bin/dbclient", &link).unwrap();
        // The same program by two names: one real path, one loader.
        let c = closure(&[&link, Path::new("/usr/bin/dbclient")]).unwrap();
        assert!(c.loader.starts_with("ld-"), "{c:?}");
        assert!(c.libs.contains_key(&c.loader), "{c:?}");
        // A library is no program: it names no loader.
        let libz = c.libs["libz.so.1"].clone();
        let err = closure(&[&libz]).unwrap_err().to_string();
        assert!(err.contains("not a dynamically linked program"), "{err}");
    }

    #[test]
    fn a_script_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let err = closure(&[&script]).unwrap_err().to_string();
        assert!(err.contains("tool"), "{err}");
    }
}
