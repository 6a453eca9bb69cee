//! The site's hooks directory (`hooks_dir`): OCI hooks 1.0.0 JSON files, the
//! format Podman, CRI-O and Sarus read. Every `*.json` file is loaded in
//! lexical order ([`file`]), checked for root ownership when we run as root
//! ([`trust`]), and selected for a container by its `when` conditions against
//! the spec ([`select`]). Selected hooks are appended to the spec's own, stage
//! by stage, in file order. Documented in docs/hooks.md.

pub mod file;
pub mod select;
pub mod trust;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hooks, Spec};

pub use file::{HookFile, Stage};

/// Errors reading the hooks directory; each names the file and, where it
/// applies, the field.
#[derive(Debug, thiserror::Error)]
pub enum HooksDError {
    /// The directory or a file cannot be read.
    #[error("hooks.d {}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Malformed JSON or a wrong type (serde names the field, line and column).
    #[error("hooks.d file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A field has a value berth refuses.
    #[error("hooks.d file {}: {field}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    /// A file, binary or directory that root would trust is not root's alone.
    #[error("hooks.d {}: {reason}: run `chown root:root` and `chmod go-w` on it", path.display())]
    Insecure { path: PathBuf, reason: String },
}

/// Loads and validates every `*.json` file of `dir`, in lexical order of file
/// names (so `10-mpi.json` runs before `20-ssh.json`). As root, the directory,
/// each file and each hook binary must pass [`trust::check`].
pub fn load(dir: &Path) -> Result<Vec<HookFile>, HooksDError> {
    let root = nix::unistd::geteuid().is_root();
    let mut trust = trust::Trust::default();
    if root {
        trust.check(dir)?;
    }
    let read = |source| HooksDError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .map(|e| e.map(|e| e.path()).map_err(read))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            if root {
                trust.check(p)?;
            }
            let hook = file::parse_file(p)?;
            if root {
                trust.check(&hook.hook.path)?;
            }
            Ok(hook)
        })
        .collect()
}

/// The site's hooks (none when `hooks_dir` is not set).
pub fn site_hooks(site: &crate::site::SiteConfig) -> Result<Vec<HookFile>, HooksDError> {
    match &site.hooks_dir {
        Some(dir) => load(dir),
        None => Ok(Vec::new()),
    }
}

/// Appends the hooks of `files` whose conditions match `spec` to its hooks,
/// after any it already has; returns how many files were selected.
pub fn apply(files: &[HookFile], spec: &mut Spec) -> usize {
    let chosen: Vec<&HookFile> = files.iter().filter(|f| select::matches(f, spec)).collect();
    if chosen.is_empty() {
        return 0;
    }
    let mut hooks = spec.hooks().clone().unwrap_or_default();
    for f in &chosen {
        for stage in &f.stages {
            push(&mut hooks, *stage, f.hook.to_oci());
        }
    }
    spec.set_hooks(Some(hooks));
    chosen.len()
}

fn push(hooks: &mut Hooks, stage: Stage, hook: oci_spec::runtime::Hook) {
    let list = match stage {
        // Deprecated in the spec but still run by berth (and by runc, Podman).
        #[allow(deprecated)]
        Stage::Prestart => hooks.prestart_mut(),
        Stage::CreateRuntime => hooks.create_runtime_mut(),
        Stage::CreateContainer => hooks.create_container_mut(),
        Stage::StartContainer => hooks.start_container_mut(),
        Stage::Poststart => hooks.poststart_mut(),
        Stage::Poststop => hooks.poststop_mut(),
    };
    list.get_or_insert_with(Vec::new).push(hook);
}

/// True when `spec` has at least one hook in any stage.
pub fn any(spec: &Spec) -> bool {
    #[allow(deprecated)]
    spec.hooks().as_ref().is_some_and(|h| {
        [
            h.prestart(),
            h.create_runtime(),
            h.create_container(),
            h.start_container(),
            h.poststart(),
            h.poststop(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    })
}

#[cfg(test)]
mod tests {
    use super::select::tests::spec;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A root-owned 0755 directory in /tmp (a sticky root-owned parent).
    fn dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    fn write(d: &Path, name: &str, when: &str, stages: &str) {
        let text = format!(
            r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh","args":["sh","-c","{name}"]}},"when":{when},"stages":{stages}}}"#
        );
        std::fs::write(d.join(name), text).unwrap();
    }

    #[test]
    fn files_load_in_lexical_order_and_append_after_existing_hooks() {
        let d = dir();
        write(
            d.path(),
            "20-b.json",
            r#"{"always":true}"#,
            r#"["createRuntime"]"#,
        );
        write(
            d.path(),
            "10-a.json",
            r#"{"always":true}"#,
            r#"["createRuntime","poststop"]"#,
        );
        write(
            d.path(),
            "15-off.json",
            r#"{"annotations":{"^x$":"^1$"}}"#,
            r#"["createRuntime"]"#,
        );
        std::fs::write(d.path().join("README"), "not json, not read").unwrap();
        let files = load(d.path()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["10-a.json", "15-off.json", "20-b.json"]);
        let mut s = spec(&[], "/bin/sh", false);
        let existing = oci_spec::runtime::HookBuilder::default()
            .path("/bin/true")
            .build()
            .unwrap();
        let mut hooks = Hooks::default();
        hooks.set_create_runtime(Some(vec![existing]));
        s.set_hooks(Some(hooks));
        assert_eq!(apply(&files, &mut s), 2);
        let h = s.hooks().clone().unwrap();
        let cr: Vec<String> = h
            .create_runtime()
            .clone()
            .unwrap()
            .iter()
            .map(|h| h.args().clone().unwrap_or_default().join(" "))
            .collect();
        assert_eq!(cr, ["", "sh -c 10-a.json", "sh -c 20-b.json"]);
        assert_eq!(h.poststop().clone().unwrap().len(), 1);
        assert!(any(&s));
        assert!(!any(&spec(&[], "/bin/sh", false)));
    }

    #[test]
    fn one_bad_file_fails_the_whole_directory_naming_it() {
        let d = dir();
        write(
            d.path(),
            "10-a.json",
            r#"{"always":true}"#,
            r#"["createRuntime"]"#,
        );
        write(d.path(), "20-bad.json", r#"{}"#, r#"["createRuntime"]"#);
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("20-bad.json") && e.contains("when"), "{e}");
    }
}
