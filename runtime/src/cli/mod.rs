//! Command line, runc-compatible where the OCI spec is silent, so Podman,
//! conmon and Slurm's oci.conf can drive berth like runc.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

pub mod fast;
pub mod features;
pub mod hooks;
pub mod image;
mod image_list;
pub mod image_run;
pub mod run;
pub mod slurm;
pub mod spec;
pub mod ssh_keygen;

/// berth: an OCI runtime for HPC clusters.
/// `println!` for command output: when the reader goes away early
/// (`berth images | head -1`) the command ends quietly with status 0 instead
/// of panicking (berth ignores SIGPIPE, like every Rust program, so that a
/// closed pipe can never kill it halfway through creating a container).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

/// Writes one line of command output; see [`outln!`].
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        crate::log::error(&format!("cannot write to standard output: {e}"));
        std::process::exit(1);
    }
}

#[derive(Debug, PartialEq, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// State directory (default /run/berth, or $XDG_RUNTIME_DIR/berth when not root).
    #[arg(long, global = true)]
    pub root: Option<PathBuf>,
    /// Append log lines to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    /// Verbose logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility; systemd cgroup paths are refused at create.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility; berth detects rootless mode from the euid.
    #[arg(long, global = true)]
    pub rootless: Option<String>,
    /// The operation.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, PartialEq, Subcommand)]
pub enum Cmd {
    /// Create a container (it waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Print the container state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM).
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container.
    Delete {
        /// Container id.
        id: String,
        /// Kill it first if running.
        #[arg(short, long)]
        force: bool,
    },
    /// Create and start a container, wait for it unless --detach.
    Run(RunArgs),
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Print the runtime's features as JSON.
    Features,
    /// Write a starting config.json (runc-shaped; rootless when not root).
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
}

/// Arguments of `create`.
#[derive(Debug, PartialEq, clap::Args)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the init pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Accepted for runc compatibility (berth always pivots in a mount namespace).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra fds (from 3).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

/// Arguments of `run`.
#[derive(Debug, PartialEq, clap::Args)]
pub struct RunArgs {
    /// Create options.
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once started.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the state after the container exits.
    #[arg(long)]
    pub keep: bool,
}

/// Arguments of `exec`.
#[derive(Debug, PartialEq, clap::Args)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// Command and arguments (when --process is not used).
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
    /// Process JSON file.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Return once started.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass N extra fds (from 3).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility; ignored (no SELinux support).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile.
    #[arg(long)]
    pub apparmor: Option<String>,
}
