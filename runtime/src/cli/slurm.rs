//! `berth slurm-create` / `berth slurm-delete`: the two calls the SPANK plugin
//! makes from slurmstepd. Output is one JSON object on success; on failure one
//! `berth: error: ...` line and a non-zero exit, with nothing left behind.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::bundle::annotations;
use crate::bundle::slurm::{self, Identity, StepRequest};
use crate::cli::image::Common;
use crate::site::SiteConfig;

#[derive(Debug, Parser)]
#[command(name = "berth")]
struct SlurmCli {
    #[command(subcommand)]
    cmd: SlurmCmd,
}

#[derive(Debug, Subcommand)]
enum SlurmCmd {
    /// Make the container of one step on this node (used by spank_berth.so).
    SlurmCreate(Box<CreateArgs>),
    /// Remove a step's container and its bundle, or every container of a job
    /// (used by spank_berth.so).
    SlurmDelete {
        /// Container id.
        #[arg(long, conflicts_with = "job", required_unless_present = "job")]
        id: Option<String>,
        /// Job id: remove all of the job's containers.
        #[arg(long)]
        job: Option<u32>,
    },
}

#[derive(Debug, clap::Args)]
struct CreateArgs {
    /// Site configuration (default: $BERTH_CONFIG or /etc/berth/berth.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    id: String,
    /// The image; without it, only an existing (named) container is joined.
    #[arg(long)]
    image: Option<String>,
    #[arg(long)]
    uid: u32,
    #[arg(long)]
    gid: u32,
    /// Supplementary gids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<u32>,
    /// The job user's login name (the plugin looks the user up once, in
    /// slurmstepd; berth does no passwd or group lookups itself).
    #[arg(long, value_parser = passwd_field)]
    user_name: Option<String>,
    /// The job user's home directory.
    #[arg(long, value_parser = passwd_field)]
    home: Option<String>,
    /// The job user's login shell.
    #[arg(long, value_parser = passwd_field)]
    shell: Option<String>,
    /// GID=NAME of the job's primary or a supplementary group (repeatable).
    #[arg(long, value_parser = group_name)]
    group_name: Vec<(u32, String)>,
    /// SRC:DST[:ro], repeatable.
    #[arg(long)]
    mount: Vec<String>,
    #[arg(long)]
    workdir: Option<String>,
    #[arg(long)]
    writable: bool,
    /// Run the image's entrypoint once in the new container, as the job user,
    /// before any task joins (Pyxis's semantics: Slurm starts the tasks, so an
    /// entrypoint cannot wrap them).
    #[arg(long)]
    entrypoint: bool,
    #[arg(long)]
    no_mount_home: bool,
    /// MPI type for the MPI hook.
    #[arg(long)]
    mpi: Option<String>,
    #[arg(long)]
    ssh: bool,
    /// The step's host GPU indices (`0,1`): checked, then set as
    /// `com.berth.gpus` for the NVIDIA hook.
    #[arg(long)]
    gpus: Option<String>,
    /// Annotation KEY=VALUE for hooks.d selection (repeatable): the plugin
    /// passes the step's facts (com.berth.slurm.*).
    #[arg(long)]
    annotation: Vec<String>,
    /// The batch script's directory, bound read-only at the same path.
    #[arg(long)]
    script_dir: Option<PathBuf>,
}

fn create(a: CreateArgs) -> Result<(), String> {
    let site = match &a.config {
        Some(p) => SiteConfig::load_file(p),
        None => SiteConfig::load(),
    }
    .map_err(|e| e.to_string())?;
    let annotations = annotations::build(&annotations::Requested {
        image: a.image.as_deref().unwrap_or_default(),
        mpi: a.mpi.is_some(),
        mpi_type: a.mpi.as_deref(),
        ssh: a.ssh,
        gpus: a.gpus.as_deref(),
        extra: &a.annotation,
    })
    .map_err(|e| e.to_string())?;
    let request = StepRequest {
        id: a.id,
        image: a.image,
        uid: a.uid,
        gid: a.gid,
        groups: a.groups,
        identity: Identity {
            name: a.user_name,
            home: a.home.map(PathBuf::from),
            shell: a.shell,
            groups: a.group_name,
        },
        mounts: a.mount,
        workdir: a.workdir,
        writable: a.writable,
        mount_home: !a.no_mount_home,
        annotations,
        script_dir: a.script_dir,
        entrypoint: a.entrypoint,
    };
    let common = Common {
        store: None,
        json: true,
        quiet: true,
        debug: false,
    };
    let made = slurm::create(&site, &common, &request).map_err(|e| e.to_string())?;
    crate::outln!(
        "{}",
        serde_json::to_string(&made).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Parses `--group-name GID=NAME`.
fn group_name(s: &str) -> Result<(u32, String), String> {
    let (gid, name) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected GID=NAME"))?;
    let gid = gid
        .parse()
        .map_err(|_| format!("{gid:?} is not a numeric gid"))?;
    Ok((gid, passwd_field(name)?))
}

/// A value written into the container's /etc/passwd or /etc/group: one
/// non-empty field, so it cannot add lines or fields.
fn passwd_field(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains([':', '\n']) {
        return Err(format!("{s:?} cannot be a passwd or group field"));
    }
    Ok(s.to_string())
}

/// Runs `slurm-create`/`slurm-delete` when they are the subcommand; `None` otherwise.
pub fn dispatch() -> Option<i32> {
    let sub = crate::args::sub()?;
    if sub != "slurm-create" && sub != "slurm-delete" {
        return None;
    }
    crate::log::init(None, false, false);
    let result = match SlurmCli::parse_from(crate::args::os()).cmd {
        SlurmCmd::SlurmCreate(a) => create(*a),
        SlurmCmd::SlurmDelete { id: Some(id), .. } => slurm::delete(&id).map_err(|e| e.to_string()),
        SlurmCmd::SlurmDelete { job, .. } => slurm::delete_job(job.unwrap_or_default())
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    Some(match result {
        Ok(()) => 0,
        Err(msg) => {
            crate::log::error(&msg);
            1
        }
    })
}
