//! `berth hooks [--json]`: the admin's check of the site's hooks directory.
//! Lists every file (hook path, stages, conditions) in the order they run, or
//! fails with the one-line error `berth run` would give, naming the bad file.

use std::path::PathBuf;

use clap::Parser;
use serde_json::{json, Value};

use crate::hooks_d::{self, HookFile};
use crate::site::SiteConfig;

#[derive(Debug, Parser)]
#[command(name = "berth hooks")]
struct HooksCli {
    /// Site configuration (default: $BERTH_CONFIG or /etc/berth/berth.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// One file as JSON, in the hooks.d format (patterns as written).
fn to_json(f: &HookFile) -> Value {
    let w = &f.when;
    let mut when = serde_json::Map::new();
    if let Some(a) = w.always {
        when.insert("always".into(), a.into());
    }
    if !w.annotations.is_empty() {
        let map: serde_json::Map<String, Value> = w
            .annotations
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_str().into()))
            .collect();
        when.insert("annotations".into(), map.into());
    }
    if !w.commands.is_empty() {
        let list: Vec<&str> = w.commands.iter().map(|c| c.as_str()).collect();
        when.insert("commands".into(), list.into());
    }
    if let Some(b) = w.has_bind_mounts {
        when.insert("hasBindMounts".into(), b.into());
    }
    let stages: Vec<&str> = f.stages.iter().map(|s| s.name()).collect();
    json!({"file": f.file, "hook": f.hook, "when": when, "stages": stages})
}

/// One line per condition kind, for people.
fn describe(f: &HookFile) -> String {
    let v = to_json(f);
    let stages: Vec<&str> = f.stages.iter().map(|s| s.name()).collect();
    format!(
        "{}\n  path:   {}\n  stages: {}\n  when:   {}",
        f.file.display(),
        f.hook.path.display(),
        stages.join(", "),
        v["when"]
    )
}

fn run(a: HooksCli) -> Result<(), String> {
    let site = match &a.config {
        Some(p) => SiteConfig::load_file(p),
        None => SiteConfig::load(),
    }
    .map_err(|e| e.to_string())?;
    let Some(dir) = &site.hooks_dir else {
        if a.json {
            crate::outln!("[]");
        } else {
            crate::outln!("no hooks_dir in the site config: no hooks.d hooks");
        }
        return Ok(());
    };
    let files = hooks_d::load(dir).map_err(|e| e.to_string())?;
    if a.json {
        let list: Vec<Value> = files.iter().map(to_json).collect();
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&list).map_err(|e| e.to_string())?
        );
    } else {
        crate::outln!("{}: {} hook file(s), all valid", dir.display(), files.len());
        for f in &files {
            crate::outln!("{}", describe(f));
        }
    }
    Ok(())
}

/// Runs `berth hooks` when it is the subcommand; `None` otherwise.
pub fn dispatch() -> Option<i32> {
    let mut args = crate::args::strings();
    if args.get(1).map(String::as_str) != Some("hooks") {
        return None;
    }
    crate::log::init(None, false, false);
    args.remove(1);
    Some(match run(HooksCli::parse_from(args)) {
        Ok(()) => 0,
        Err(msg) => {
            crate::log::error(&msg);
            1
        }
    })
}
