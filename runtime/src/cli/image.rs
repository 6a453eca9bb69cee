//! The image commands: `pull`, `load`, `images`, `inspect`, `rmi`, `gc` and
//! `run IMAGE`. They have their own parser, chosen by [`dispatch`] before the
//! runtime's runc-style one: `run` is the image form unless `--bundle`/`-b`
//! is given (runc-style callers always pass a bundle).

use std::io::Read;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::image::progress::{Mode, Progress};
use crate::image::reference::Reference;
use crate::image::{auth::Credentials, load, pull, Cause, ImageError};
use crate::site::SiteConfig;
use crate::store::Store;

/// Parser of the image commands.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "berth image commands")]
pub struct ImageCli {
    /// The command.
    #[command(subcommand)]
    pub cmd: ImageCmd,
}

/// Options shared by the image commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Use this store directory only (also $BERTH_STORE).
    #[arg(long, env = "BERTH_STORE")]
    pub store: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Verbose logging.
    #[arg(long)]
    pub debug: bool,
}

/// The image subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Pull an image from a registry into the store.
    Pull {
        #[command(flatten)]
        common: Common,
        /// Registry user name (password from stdin with --password-stdin).
        #[arg(long)]
        username: Option<String>,
        /// Read the password from standard input.
        #[arg(long = "password-stdin")]
        password_stdin: bool,
        /// Extra CA certificate (PEM) for the registry.
        #[arg(long = "ca-file")]
        ca_file: Vec<PathBuf>,
        /// Image reference.
        image: String,
    },
    /// Load a docker-archive or OCI layout (directory or tar).
    Load {
        #[command(flatten)]
        common: Common,
        /// Also record these references.
        #[arg(long)]
        tag: Vec<String>,
        /// The archive or layout.
        input: PathBuf,
    },
    /// List images.
    Images {
        #[command(flatten)]
        common: Common,
    },
    /// Print an image's metadata as JSON.
    Inspect {
        #[command(flatten)]
        common: Common,
        /// Reference or id.
        image: String,
    },
    /// Remove references (and the image once none is left), or an image by id.
    Rmi {
        #[command(flatten)]
        common: Common,
        /// References or ids.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove stale work files; with --prune also unreferenced images.
    Gc {
        #[command(flatten)]
        common: Common,
        /// Also delete images no reference names.
        #[arg(long)]
        prune: bool,
    },
    /// Run a command in an image (pulled if missing), then clean up.
    Run(super::image_run::RunImageArgs),
}

const IMAGE_CMDS: &[&str] = &["pull", "load", "images", "inspect", "rmi", "gc"];

/// Runs the image command named by the process arguments, if it is one;
/// returns the exit code, or None for the runtime's own commands.
pub fn dispatch() -> Option<i32> {
    let args = crate::args::strings();
    let sub = args.get(1).map(String::as_str)?;
    let is_image = IMAGE_CMDS.contains(&sub)
        || (sub == "run"
            && !args
                .iter()
                .any(|a| a == "-b" || a == "--bundle" || a.starts_with("--bundle=")));
    if !is_image {
        return None;
    }
    let cli = ImageCli::parse_from(crate::args::os());
    let debug = match &cli.cmd {
        ImageCmd::Pull { common, .. }
        | ImageCmd::Load { common, .. }
        | ImageCmd::Images { common }
        | ImageCmd::Inspect { common, .. }
        | ImageCmd::Rmi { common, .. }
        | ImageCmd::Gc { common, .. } => common.debug,
        ImageCmd::Run(a) => a.common.debug,
    };
    crate::log::init(None, false, debug);
    Some(match run(cli.cmd) {
        Ok(code) => code,
        Err(msg) => {
            crate::log::error(&msg);
            1
        }
    })
}

fn euid_is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Stores to write to and to read from, by the rules in docs/store.md.
pub fn stores(site: &SiteConfig, common: &Common) -> Result<(Store, Vec<Store>), String> {
    let e = |e: crate::store::StoreError| e.to_string();
    if let Some(s) = &common.store {
        let st = Store::open(s, false).map_err(e)?;
        return Ok((st.clone(), vec![st]));
    }
    let system = site.store.system.as_ref();
    if let (Some(sys), true) = (system, euid_is_root()) {
        let st = Store::open(sys, true).map_err(e)?;
        return Ok((st.clone(), vec![st]));
    }
    let user = Store::open(&site.user_store(), false).map_err(e)?;
    let mut read: Vec<Store> = system
        .and_then(|p| Store::existing(p))
        .into_iter()
        .collect();
    read.push(user.clone());
    Ok((user, read))
}

/// Finds an image in the stores by reference, manifest digest or id (prefix).
pub fn find(
    read: &[Store],
    name: &str,
) -> Result<Option<(Store, crate::store::ImageMeta)>, String> {
    let hexish = name.strip_prefix("sha256:").unwrap_or(name);
    for st in read {
        if let Ok(r) = Reference::parse(name) {
            if let Some(m) = st.lookup(&r.to_string()).map_err(|e| e.to_string())? {
                return Ok(Some((st.clone(), m)));
            }
            if let Some(d) = &r.digest {
                if let Some(m) = st.find_manifest(d).map_err(|e| e.to_string())? {
                    return Ok(Some((st.clone(), m)));
                }
            }
        }
        if hexish.len() >= 6 && hexish.bytes().all(|b| b.is_ascii_hexdigit()) {
            let all = st.list().map_err(|e| e.to_string())?;
            let mut hits = all.into_iter().filter(|m| m.id.hex().starts_with(hexish));
            if let Some(m) = hits.next() {
                if let Some(other) = hits.next() {
                    return Err(format!(
                        "image id prefix {hexish} is ambiguous in {}: it matches {} and {}: give more digits",
                        st.root().display(),
                        m.id,
                        other.id
                    ));
                }
                return Ok(Some((st.clone(), m)));
            }
        }
    }
    Ok(None)
}

fn print_json(v: &impl serde::Serialize) {
    crate::outln!(
        "{}",
        serde_json::to_string_pretty(v).expect("output serializes")
    );
}

/// Pulls (used by `pull` and by `run` when the image is missing).
pub fn do_pull(
    site: &SiteConfig,
    write: &Store,
    image: &str,
    opts: &pull::PullOpts,
    mode: Mode,
) -> Result<pull::PullOutcome, ImageError> {
    let r = Reference::parse(image).map_err(|e| Cause::from(e).at("pull", image))?;
    let progress = Progress::new(mode, &r.to_string());
    pull::pull(&r, write, site, opts, &progress)
}

fn run(cmd: ImageCmd) -> Result<i32, String> {
    let site = SiteConfig::load().map_err(|e| e.to_string())?;
    match cmd {
        ImageCmd::Pull {
            common,
            username,
            password_stdin,
            ca_file,
            image,
        } => {
            let creds = match (username, password_stdin) {
                (Some(u), true) => {
                    let mut p = String::new();
                    std::io::stdin()
                        .read_to_string(&mut p)
                        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
                    Some(Credentials {
                        username: u,
                        password: p.trim_end_matches(['\n', '\r']).to_string(),
                    })
                }
                (Some(_), false) | (None, true) => {
                    return Err("--username and --password-stdin go together".into())
                }
                (None, false) => None,
            };
            let (write, _) = stores(&site, &common)?;
            let opts = pull::PullOpts {
                creds,
                ca_files: ca_file,
                rootless: !euid_is_root(),
            };
            let out = do_pull(
                &site,
                &write,
                &image,
                &opts,
                Mode::detect(common.json, common.quiet),
            )
            .map_err(|e| e.to_string())?;
            if common.json {
                print_json(&out);
            } else {
                crate::outln!("{} {}", out.reference, out.image.id);
            }
            Ok(0)
        }
        ImageCmd::Load { common, tag, input } => {
            let (write, _) = stores(&site, &common)?;
            let progress = Progress::new(
                Mode::detect(common.json, common.quiet),
                &input.display().to_string(),
            );
            let out = load::load(&input, &tag, &write, &site, &progress, !euid_is_root())
                .map_err(|e| e.to_string())?;
            if common.json {
                print_json(&out);
            } else {
                crate::outln!("{} {}", out.references.join(","), out.image.id);
            }
            Ok(0)
        }
        ImageCmd::Images { common } => super::image_list::images(&site, &common),
        ImageCmd::Inspect { common, image } => super::image_list::inspect(&site, &common, &image),
        ImageCmd::Rmi { common, images } => super::image_list::rmi(&site, &common, &images),
        ImageCmd::Gc { common, prune } => {
            let (write, _) = stores(&site, &common)?;
            let report = write.gc(prune).map_err(|e| e.to_string())?;
            // Also containers left by a killed slurmstepd or `berth run` (in
            // this user's state root).
            let containers = crate::bundle::slurm::delete_stale(None);
            if common.json {
                print_json(&report);
            } else {
                crate::outln!(
                    "removed {} stale work dirs, {} orphans, {} corrupt images, {} unreferenced images, {} leftover files, {} stale containers",
                    report.stale_work.len(),
                    report.orphans.len(),
                    report.corrupt.len(),
                    report.unreferenced.len(),
                    report.leftovers.len(),
                    containers.len()
                );
            }
            Ok(0)
        }
        ImageCmd::Run(a) => super::image_run::run(&site, a),
    }
}
