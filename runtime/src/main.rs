//! The `berth` binary: parse, run, print one line on error.

use clap::Parser;

fn main() {
    // The SPANK plugin's two calls.
    if let Some(code) = berth::cli::slurm::dispatch() {
        std::process::exit(code);
    }
    // The admin's hooks.d check.
    if let Some(code) = berth::cli::hooks::dispatch() {
        std::process::exit(code);
    }
    if let Some(code) = berth::cli::ssh_keygen::dispatch() {
        std::process::exit(code);
    }
    // Image commands (pull, load, images, ..., run IMAGE) have their own parser.
    if let Some(code) = berth::cli::image::dispatch() {
        std::process::exit(code);
    }
    // The lifecycle commands an OCI client runs per container skip clap.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = berth::cli::fast::parse(&args).unwrap_or_else(|| berth::cli::Cli::parse_from(&args));
    berth::log::init(cli.log.clone(), cli.log_format == "json", cli.debug);
    let root = cli.root.clone().unwrap_or_else(berth::state::default_root);
    berth::cli::run::ROOT.with(|r| *r.borrow_mut() = root);
    match berth::cli::run::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            berth::log::error(&e.to_string());
            std::process::exit(1);
        }
    }
}
