//! The `berth` binary: parse, run, print one line on error.
//!
//! `#![no_main]`: the OCI lifecycle execs berth three times per container,
//! and std's start-up (main-thread stack guard found by reading
//! /proc/self/maps, an alternate signal stack) costs ~50 us of each. What of
//! it berth needs is done here: SIGPIPE ignored (a closed pipe must never
//! kill berth halfway through creating a container; `outln!` handles the
//! error), fds 0-2 open, and a panic ends the process with status 101.
// Unit tests keep the test harness's own main.
#![cfg_attr(not(test), no_main)]

use clap::Parser;

/// The C entry point. It records argv for `berth::args`: glibc passes it to
/// std's initialiser too, musl does not.
#[cfg(not(test))]
#[no_mangle]
// The C start-up code calls it with a valid argv; nothing else can.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: argc and argv as the C start-up code passed them.
    unsafe { berth::args::init(argc, argv) };
    // SAFETY: setting a signal disposition to SIG_IGN, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    open_std_fds();
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    // Not a return: std::process::exit flushes std's stdout buffer.
    std::process::exit(code)
}

/// Points a closed fd 0, 1 or 2 at /dev/null, as std's runtime would, so a
/// file berth opens can never become its stdout.
#[cfg_attr(test, allow(dead_code))]
fn open_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD on a small integer only queries it.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // SAFETY: open returns the lowest free fd, which is `fd`.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
fn run() -> i32 {
    // The SPANK plugin's two calls.
    if let Some(code) = berth::cli::slurm::dispatch() {
        return code;
    }
    // The admin's hooks.d check.
    if let Some(code) = berth::cli::hooks::dispatch() {
        return code;
    }
    if let Some(code) = berth::cli::ssh_keygen::dispatch() {
        return code;
    }
    // Image commands (pull, load, images, ..., run IMAGE) have their own parser.
    if let Some(code) = berth::cli::image::dispatch() {
        return code;
    }
    // The lifecycle commands an OCI client runs per container skip clap.
    let args = berth::args::os();
    let cli = berth::cli::fast::parse(args).unwrap_or_else(|| berth::cli::Cli::parse_from(args));
    berth::log::init(cli.log.clone(), cli.log_format == "json", cli.debug);
    let root = cli.root.clone().unwrap_or_else(berth::state::default_root);
    berth::cli::run::ROOT.with(|r| *r.borrow_mut() = root);
    match berth::cli::run::run(cli) {
        Ok(code) => code,
        Err(e) => {
            berth::log::error(&e.to_string());
            1
        }
    }
}
