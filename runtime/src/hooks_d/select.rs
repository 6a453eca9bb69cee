//! Whether a hooks.d file applies to a container, by Podman's rules: every
//! condition given must hold (AND); `annotations` needs, for each
//! (key regex, value regex) entry, some annotation whose key and value both
//! match; `commands` needs one regex to match `process.args[0]`; `always`
//! decides alone when it is the only condition; `hasBindMounts: true` needs a
//! bind mount. Regexes search (unanchored) like Podman's and CRI-O's: write
//! `^...$` to match a whole key or value.

use oci_spec::runtime::Spec;

use super::HookFile;

/// True when the file's `when` conditions hold for `spec`.
pub fn matches(f: &HookFile, spec: &Spec) -> bool {
    let w = &f.when;
    if w.always == Some(false) {
        return false;
    }
    if let Some(want) = w.has_bind_mounts {
        if !(want && has_bind_mounts(spec)) {
            return false;
        }
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let all_annotations = w.annotations.iter().all(|(k, v)| {
        annotations
            .iter()
            .any(|(key, value)| k.is_match(key) && v.is_match(value))
    });
    if !all_annotations {
        return false;
    }
    if !w.commands.is_empty() {
        let arg0 = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_ref())
            .and_then(|a| a.first().cloned());
        return arg0.is_some_and(|a| w.commands.iter().any(|c| c.is_match(&a)));
    }
    true
}

/// A mount is a bind mount by its type or by a `bind`/`rbind` option.
fn has_bind_mounts(spec: &Spec) -> bool {
    spec.mounts().iter().flatten().any(|m| {
        m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind")
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hooks_d::file::parse;
    use std::path::Path;

    fn hook(when: &str) -> HookFile {
        let text = format!(
            r#"{{"version":"1.0.0","hook":{{"path":"/bin/sh"}},"when":{when},"stages":["createRuntime"]}}"#
        );
        parse(Path::new("/t.json"), text.as_bytes()).unwrap()
    }

    /// A spec with these annotations, `args[0]`, and maybe a bind mount.
    pub(crate) fn spec(annotations: &[(&str, &str)], arg0: &str, bind: bool) -> Spec {
        let mut s = Spec::default();
        s.set_annotations(Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
        let mut p = s.process().clone().unwrap();
        p.set_args(Some(vec![arg0.into(), "x".into()]));
        s.set_process(Some(p));
        if bind {
            let m = oci_spec::runtime::MountBuilder::default()
                .destination("/data")
                .typ("none")
                .source("/tmp")
                .options(vec!["rbind".to_string()])
                .build()
                .unwrap();
            let mut mounts = s.mounts().clone().unwrap_or_default();
            mounts.push(m);
            s.set_mounts(Some(mounts));
        }
        s
    }

    #[test]
    fn always() {
        assert!(matches(
            &hook(r#"{"always":true}"#),
            &spec(&[], "/bin/sh", false)
        ));
        assert!(!matches(
            &hook(r#"{"always":false}"#),
            &spec(&[], "/bin/sh", false)
        ));
    }

    #[test]
    fn annotations_need_every_entry_matched_by_one_annotation() {
        let h = hook(
            r#"{"annotations":{"^com\\.berth\\.mpi$":"^true$","^com\\.berth\\.mpi\\.type$":"pmi"}}"#,
        );
        let both = [("com.berth.mpi", "true"), ("com.berth.mpi.type", "pmi2")];
        assert!(matches(&h, &spec(&both, "/bin/sh", false)));
        assert!(!matches(&h, &spec(&both[..1], "/bin/sh", false)));
        let wrong_value = [("com.berth.mpi", "false"), ("com.berth.mpi.type", "pmi2")];
        assert!(!matches(&h, &spec(&wrong_value, "/bin/sh", false)));
        // A key matching one entry with the value of another does not count.
        let h = hook(r#"{"annotations":{"^a$":"^1$"}}"#);
        assert!(!matches(
            &h,
            &spec(&[("a", "2"), ("b", "1")], "/bin/sh", false)
        ));
        // Unanchored, like Podman: "gpus" finds com.berth.gpus.
        let h = hook(r#"{"annotations":{"gpus":"."}}"#);
        assert!(matches(
            &h,
            &spec(&[("com.berth.gpus", "0,1")], "/bin/sh", false)
        ));
    }

    #[test]
    fn commands_match_the_first_argument_and_one_pattern_suffices() {
        let h = hook(r#"{"commands":["^/usr/bin/python3?$","^/opt/app$"]}"#);
        assert!(matches(&h, &spec(&[], "/usr/bin/python3", false)));
        assert!(matches(&h, &spec(&[], "/opt/app", false)));
        assert!(!matches(&h, &spec(&[], "python3", false)));
        assert!(!matches(&h, &spec(&[], "/bin/sh", false)));
    }

    #[test]
    fn bind_mounts() {
        let h = hook(r#"{"hasBindMounts":true}"#);
        assert!(matches(&h, &spec(&[], "/bin/sh", true)));
        assert!(!matches(&h, &spec(&[], "/bin/sh", false)));
        assert!(!matches(
            &hook(r#"{"hasBindMounts":false}"#),
            &spec(&[], "/bin/sh", true)
        ));
    }

    #[test]
    fn conditions_are_anded() {
        let h = hook(
            r#"{"always":true,"annotations":{"^k$":"^v$"},"commands":["sh$"],"hasBindMounts":true}"#,
        );
        assert!(matches(&h, &spec(&[("k", "v")], "/bin/sh", true)));
        assert!(!matches(&h, &spec(&[("k", "v")], "/bin/sh", false)));
        assert!(!matches(&h, &spec(&[("k", "w")], "/bin/sh", true)));
        assert!(!matches(&h, &spec(&[("k", "v")], "/bin/ls", true)));
    }
}
