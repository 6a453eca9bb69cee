//! `berth-dev`: brings berth's development stack up and down (a local Slurm
//! cluster, two registries, the offline test images) and runs the demo job.
//! The README's two commands and `.ci/run` drive it.

use std::process::ExitCode;

use berth_tests::stack::{self, StackError};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "berth's local development stack")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start (or reuse) the cluster and registries, build and push the test images.
    Up,
    /// Stop the cluster and registries; fails if a process is left.
    Down,
    /// Bring the stack up and run the demo job on the cluster.
    Demo,
    /// (internal) Relay 127.0.0.1:PORT inside a network namespace to this host's
    /// loopback; the cluster runs it for its node 2.
    #[command(hide = true)]
    Relay {
        /// The namespace file, e.g. /run/netns/berth-n2.
        #[arg(long)]
        netns: std::path::PathBuf,
        /// Ports to relay.
        #[arg(required = true)]
        ports: Vec<u16>,
    },
}

fn up() -> Result<stack::Stack, StackError> {
    let stack = stack::services()?;
    println!(
        "cluster: nodes {} up (SLURM_CONF={})",
        stack.cluster.nodes().join(", "),
        stack.cluster.conf_path().display()
    );
    println!(
        "registries: {} (plain) and {} (TLS, basic auth)",
        stack.plain.url(),
        stack.secure.url()
    );
    let catalog = stack::images(&stack)?;
    for img in catalog.images() {
        println!("image: {}:{} {}", img.name, img.tag, img.manifest_digest);
    }
    Ok(stack)
}

fn demo() -> Result<(), StackError> {
    let stack = up()?;
    berth_tests::demo::run(&stack)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Up => up().map(|_| ()),
        Cmd::Down => stack::down(),
        Cmd::Demo => demo(),
        Cmd::Relay { netns, ports } => {
            return match berth_tests::cluster::relay::run(&netns, &ports) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth-dev relay: error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-dev: error: {e}");
            for line in e.log_tail() {
                eprintln!("    {line}");
            }
            ExitCode::FAILURE
        }
    }
}
