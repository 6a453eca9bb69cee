//! `berth run IMAGE`: find the image locally (no network unless missing or
//! `--pull=always`), mount it in a private mount namespace so every mount
//! disappears with this process even on `kill -9`, write the bundle, drive
//! the runtime library (create, start, wait, delete), clean up.

use std::path::{Path, PathBuf};

use super::annotations;
use super::mount::{mount_scratch, mount_squashfs, overlay_on, unmount};
use super::spec::{self, UserOptions};
use super::BundleError;
use crate::cli::image::{do_pull, find, stores};
use crate::cli::image_run::{bundles_dir, PullPolicy, RunImageArgs};
use crate::image::manifest::RunConfig;
use crate::image::progress::Mode;
use crate::image::{pull::PullOpts, Cause};
use crate::site::SiteConfig;

/// Removes the bundle's mounts and directory when dropped.
struct Cleanup {
    bundle: PathBuf,
    mounts: Vec<PathBuf>,
    rootless: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for m in self.mounts.iter().rev() {
            unmount(m, self.rootless);
        }
        if !self.bundle.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.bundle);
        }
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Resolves the image's `User` to numeric ids using the image's own /etc/passwd.
fn image_user(rootfs: &Path, user: Option<&str>) -> (u32, u32) {
    let Some(u) = user.filter(|u| !u.is_empty()) else {
        return (0, 0);
    };
    let (name, group) = u.split_once(':').map_or((u, None), |(a, b)| (a, Some(b)));
    let lookup = |file: &str, key: &str| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == key)
                .then(|| (f[2].parse().ok(), f[3].parse().ok()))
                .and_then(|(a, b)| Some((a?, b.unwrap_or(0))))
        })
    };
    let (uid, mut gid) = name
        .parse::<u32>()
        .map(|n| (n, n))
        .ok()
        .or_else(|| lookup("etc/passwd", name))
        .unwrap_or((0, 0));
    if let Some(g) = group {
        gid = g
            .parse()
            .ok()
            .or_else(|| lookup("etc/group", g).map(|(a, _)| a))
            .unwrap_or(gid);
    }
    (uid, gid)
}

/// An image mounted as a bundle's root in this process's private mount
/// namespace, with its bundle directory; dropping it undoes both.
pub(crate) struct Mounted {
    /// The bundle directory (`config.json` goes here).
    pub bundle: PathBuf,
    /// The mounted root (`bundle/rootfs`).
    pub rootfs: PathBuf,
    /// The image's run configuration.
    pub img: RunConfig,
    cleanup: Cleanup,
}

impl Mounted {
    /// Keeps the bundle and its mounts: the created container now holds them.
    /// The mounts live in our private namespace only, so they vanish with this
    /// process while the container keeps its own copies.
    pub fn keep(mut self) {
        self.cleanup.mounts.clear();
        self.cleanup.bundle = PathBuf::new();
    }
}

/// An image found in (or pulled into) a store, not mounted yet.
pub(crate) struct Located {
    store: crate::store::Store,
    meta: crate::store::ImageMeta,
    /// The image's run configuration.
    pub img: RunConfig,
}

/// Finds (or pulls, per `pull`) `image`, enters a private mount namespace when
/// root, and mounts the image read-only (under a tmpfs overlay when `writable`)
/// at `bundles_dir()/<id>/rootfs`.
pub(crate) fn mount_image(
    site: &SiteConfig,
    common: &crate::cli::image::Common,
    image: &str,
    pull: PullPolicy,
    writable: bool,
    id: &str,
) -> Result<Mounted, BundleError> {
    mount_located(locate(site, common, image, pull)?, writable, id)
}

/// Finds (or pulls, per `pull`) `image`.
pub(crate) fn locate(
    site: &SiteConfig,
    common: &crate::cli::image::Common,
    image: &str,
    pull: PullPolicy,
) -> Result<Located, BundleError> {
    let (write, read) = stores(site, common).map_err(BundleError::Invalid)?;
    let rootless = !nix::unistd::geteuid().is_root();
    let local = if pull == PullPolicy::Always {
        None
    } else {
        find(&read, image).map_err(BundleError::Invalid)?
    };
    let (store, meta) = match (local, pull) {
        (Some(found), _) => found,
        (None, PullPolicy::Never) => return Err(Cause::NotInStore.at("run", image).into()),
        (None, _) => {
            let opts = PullOpts {
                rootless,
                ..Default::default()
            };
            let out = do_pull(
                site,
                &write,
                image,
                &opts,
                Mode::detect(common.json, common.quiet),
            )?;
            (write.clone(), out.image)
        }
    };
    let img: RunConfig = serde_json::from_value(meta.config.clone()).unwrap_or_default();
    Ok(Located { store, meta, img })
}

/// Enters a private mount namespace when root and mounts `located` as
/// [`mount_image`] does.
pub(crate) fn mount_located(
    located: Located,
    writable: bool,
    id: &str,
) -> Result<Mounted, BundleError> {
    let Located { store, meta, img } = located;
    let rootless = !nix::unistd::geteuid().is_root();
    if !rootless {
        // Private mount namespace: our mounts cannot leak to the host and vanish with us.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
            BundleError::Mount {
                what: "private namespace".into(),
                source: e.into(),
            }
        })?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| BundleError::Mount {
            what: "/ private".into(),
            source: e.into(),
        })?;
    }
    let bundle = bundles_dir().join(id);
    std::fs::create_dir_all(bundles_dir()).map_err(io("cannot create", &bundles_dir()))?;
    // create_dir, not create_dir_all: another container's bundle of the same id
    // must fail here, before our cleanup could remove it.
    std::fs::create_dir(&bundle).map_err(io("cannot create", &bundle))?;
    let mut cleanup = Cleanup {
        bundle: bundle.clone(),
        mounts: Vec::new(),
        rootless,
    };
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir(&rootfs).map_err(io("cannot create", &rootfs))?;
    let image_file = store.image_file(&meta.id);
    if writable {
        let (lower, scratch) = (bundle.join("lower"), bundle.join("scratch"));
        for d in [&lower, &scratch] {
            std::fs::create_dir(d).map_err(io("cannot create", d))?;
        }
        mount_squashfs(&image_file, &lower, rootless)?;
        cleanup.mounts.push(lower.clone());
        // Each mount is registered as soon as it exists, so a failure
        // unmounts what came before it.
        mount_scratch(&scratch)?;
        cleanup.mounts.push(scratch.clone());
        overlay_on(&lower, &scratch, &rootfs)?;
        cleanup.mounts.push(rootfs.clone());
    } else {
        mount_squashfs(&image_file, &rootfs, rootless)?;
        cleanup.mounts.push(rootfs.clone());
    }
    Ok(Mounted {
        bundle,
        rootfs,
        img,
        cleanup,
    })
}

/// Runs the image; returns the container's exit code.
pub fn run_image(site: &SiteConfig, a: &RunImageArgs) -> Result<i32, BundleError> {
    let id = format!("berth-run-{}", std::process::id());
    let annotations = annotations::build(&annotations::Requested {
        image: &a.image,
        mpi: a.mpi,
        mpi_type: None,
        ssh: a.ssh,
        gpus: a.gpus.as_deref(),
        extra: &a.annotation,
    })?;
    let rootless = !nix::unistd::geteuid().is_root();
    // Refused before anything is pulled.
    if rootless && a.writable {
        return Err(BundleError::Invalid(
            "--writable needs root (berth mounts a tmpfs overlay on the host): run without it"
                .into(),
        ));
    }
    let located = locate(site, &a.common, &a.image, a.pull)?;
    let opts = UserOptions {
        mounts: a.mount.clone(),
        env: a.env.clone(),
        workdir: a.workdir.clone(),
        entrypoint: a.entrypoint.clone(),
        command: a.command.clone(),
        writable: a.writable,
        annotations,
    };
    // The spec (and so the hooks.d selection) before mounting: a broken hooks.d
    // fails before anything is mounted, and selected hooks get a writable
    // overlay to inject into (mount points, ld.so.cache). The container's root
    // stays read-only unless --writable: berth remounts it after the hooks.
    let mut spec = spec::build(&located.img, site, &opts, (0, 0))?;
    if rootless {
        // Hooks need the overlay and mounts only root can make. What the user
        // asked for is refused; what the site selects on its own (`always`,
        // `hasBindMounts`) is skipped, so it cannot break every user's run.
        let asked = a.mpi || a.ssh || a.gpus.is_some() || !a.annotation.is_empty();
        if crate::hooks_d::any(&spec) {
            if asked {
                return Err(BundleError::Invalid(
                    "the site's hooks selected for this container need root: run without --mpi/--ssh/--gpus/--annotation".into(),
                ));
            }
            crate::log::warn("the site's hooks need root: skipped for this unprivileged run");
            spec.set_hooks(None);
        }
    }
    let overlay = a.writable || crate::hooks_d::any(&spec);
    let mounted = mount_located(located, overlay, &id)?;
    if !overlay {
        spec::drop_missing_host_files(&mut spec, &mounted.rootfs);
    }
    if rootless {
        spec::make_rootless(
            &mut spec,
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )?;
    } else {
        let ids = image_user(&mounted.rootfs, mounted.img.user.as_deref());
        spec::set_user(&mut spec, ids);
    }
    let config = mounted.bundle.join("config.json");
    spec.save(&config)
        .map_err(|e| BundleError::Invalid(format!("cannot write {}: {e}", config.display())))?;
    let code = run_container(&mounted.bundle, &id);
    drop(mounted);
    code
}

fn run_container(bundle: &Path, id: &str) -> Result<i32, BundleError> {
    use crate::container::{self, CreateOpts};
    let root = crate::state::default_root();
    let rt = |e: crate::Error| BundleError::Runtime(format!("run {id}: {e}"));
    let opts = CreateOpts {
        root: root.clone(),
        id: id.into(),
        bundle: bundle.into(),
        ..Default::default()
    };
    let created = container::create::create(&opts).map_err(rt)?;
    if let Err(e) = container::start::start(&root, id) {
        let _ = container::delete::delete(&root, id, true);
        return Err(rt(e));
    }
    let pid = nix::unistd::Pid::from_raw(created.pid);
    let code = crate::process::wait_exit_code(pid);
    container::delete::delete(&root, id, true).map_err(rt)?;
    Ok(code)
}
