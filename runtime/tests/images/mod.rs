//! Helpers for the image tests: run the built `berth` with its own site
//! config and store, and look at the store.

// Each test binary uses a subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use berth_tests::registry::Registry;
use berth_tests::stack::{self, Stack};

/// The services plus the pushed images, shared by a test.
/// The runtime under test (`$BERTH_BIN`, else this crate's build).
pub fn berth() -> PathBuf {
    berth_tests::paths::berth_under_test(env!("CARGO_BIN_EXE_berth"))
}

pub fn stack() -> (Stack, berth_tests::image::Catalog) {
    let s = stack::services().expect("stack starts");
    let c = stack::images(&s).expect("images are pushed");
    (s, c)
}

/// A private store and site config.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub store: PathBuf,
}

impl Env {
    /// `insecure` registries and CA files go into the site config.
    pub fn new(insecure: &[String], ca_files: &[PathBuf]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("berth.toml");
        let q = |v: Vec<String>| {
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cas = q(ca_files.iter().map(|p| p.display().to_string()).collect());
        std::fs::write(
            &config,
            format!(
                "[registry]\ninsecure = [{}]\nca_files = [{cas}]\nretries = 2\n",
                q(insecure.to_vec())
            ),
        )
        .unwrap();
        let store = dir.path().join("store");
        Env { dir, config, store }
    }

    /// Plain registry allowed over HTTP, no extra CA.
    pub fn plain(reg: &Registry) -> Env {
        Env::new(&[reg.host()], &[])
    }

    /// A `berth` command with this config and store.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth());
        c.args(args)
            .env("BERTH_CONFIG", &self.config)
            .env("BERTH_STORE", &self.store)
            .env("HOME", self.dir.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .stdin(Stdio::null());
        c
    }

    /// Runs `berth ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("berth runs")
    }

    /// Runs `berth ARGS` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `berth ARGS`, requires failure; returns the one error line.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "berth {args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with("berth: error:"))
            .collect();
        assert_eq!(lines.len(), 1, "one error line expected: {err}");
        lines[0].to_string()
    }

    /// `pull --json`, parsed.
    pub fn pull_json(&self, reference: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["pull", "--json", "-q", reference])).unwrap()
    }

    /// Every file and directory (with a trailing `/`) under the store, except
    /// lock files (which may stay) and the store's own skeleton directories
    /// (`images/`, `refs/`, `tmp/`, `locks/`), sorted: a leftover work
    /// directory shows even when empty.
    pub fn store_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.store, &self.store, &mut out);
        out.retain(|p| {
            !p.ends_with(".lock") && !["images/", "refs/", "tmp/", "locks/"].contains(&p.as_str())
        });
        out.sort();
        out
    }
}

fn walk(root: &Path, p: &Path, out: &mut Vec<String>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.push(format!("{}/", path.strip_prefix(root).unwrap().display()));
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
}
