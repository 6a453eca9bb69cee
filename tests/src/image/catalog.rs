//! The project's test images and [`build_all`], which builds (or reuses) them:
//!
//! - `busybox`: static busybox with applets and `/etc` basics,
//! - `tools`: chosen host binaries with their library closure, on busybox,
//! - `layered`: adversarial layers plus `expected-tree.json`,
//! - `large`: > 300 MB generated content, cached across runs in a cache dir,
//! - `busybox-index`: an image index with the host platform and a second one,
//! - `mpi`, `mpi-old`: an MPI ping-pong with a patched copy of the host's
//!   MPICH (see [`super::mpi`]).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::busybox::{self, base_layer, etc_entries};
use super::cache::{build_or_reuse, keyed_dir, prune, source_fingerprint, stamp, DirLock};
use super::elf::add_with_libraries;
use super::flatten::flatten_image;
use super::hostfs::HostTree;
use super::layer::{Entry, Layer};
use super::oci::{build_image, package, BuiltImage, ImageSpec, LayoutWriter, PlatformManifest};
use super::{host_arch, large, layered, mpi, ImageError};

/// Where the large image is cached between runs unless told otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/berth-tests/images";

/// Host binaries of the default `tools` image.
pub const TOOLS: &[&str] = &[
    "/usr/bin/bash",
    "/bin/ls",
    "/usr/bin/id",
    "/usr/bin/env",
    "/usr/bin/true",
    "/usr/bin/stat",
    "/usr/bin/getent",
];

/// How many builder versions of the large image the cache keeps (about
/// 800 MB each): enough for a couple of checkouts used side by side.
pub const LARGE_VERSIONS_KEPT: usize = 3;

/// File name of the layered image's expected flattened tree.
pub const EXPECTED_TREE: &str = "expected-tree.json";

/// An image definition plus what its cache stamp depends on.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The image.
    pub spec: ImageSpec,
    /// Host files it reads.
    pub host_inputs: Vec<PathBuf>,
}

/// Every test image [`build_all`] produced.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// `berth-test/busybox:latest`.
    pub busybox: BuiltImage,
    /// `berth-test/tools:latest` (see [`TOOLS`]).
    pub tools: BuiltImage,
    /// `berth-test/layered:latest`.
    pub layered: BuiltImage,
    /// The flattened tree a correct unpacker must produce for `layered`
    /// (JSON list of [`super::flatten::TreeEntry`]).
    pub layered_expected_tree: PathBuf,
    /// `berth-test/large:latest`.
    pub large: BuiltImage,
    /// `berth-test/busybox-index:latest`: host platform -> the busybox manifest,
    /// plus a second platform with its own small manifest.
    pub busybox_index: BuiltImage,
    /// `berth-test/mpi:latest`: `/pingpong` on the image's own MPICH build.
    pub mpi: BuiltImage,
    /// `berth-test/mpi-old:latest`: the same with an older MPICH major.
    pub mpi_old: BuiltImage,
}

impl Catalog {
    /// Every image, small ones first.
    pub fn images(&self) -> Vec<&BuiltImage> {
        vec![
            &self.busybox,
            &self.tools,
            &self.layered,
            &self.busybox_index,
            &self.mpi,
            &self.mpi_old,
            &self.large,
        ]
    }
}

/// An image of `paths` (absolute host paths) with their shared-library
/// closure, on the busybox layer, with `/etc/os-release` naming
/// `berth-test-<name>`. Library directories outside the loader defaults are
/// listed in `/etc/ld.so.conf` (run `ldconfig` in the container to use them).
pub fn hostbins(name: &str, paths: &[&str]) -> Result<Recipe, ImageError> {
    let os_id = format!("berth-test-{name}");
    let mut tree = HostTree::new();
    let closure = add_with_libraries(&mut tree, paths)?;
    let mut top = tree.to_layer();
    for e in etc_entries(&os_id) {
        top.push(e);
    }
    if !closure.extra_lib_dirs.is_empty() {
        let conf: String = closure
            .extra_lib_dirs
            .iter()
            .map(|d| format!("{d}\n"))
            .collect();
        top.push(Entry::file("/etc/ld.so.conf", conf, 0o644));
    }
    let mut spec = ImageSpec::new(name, "latest");
    spec.layers = vec![base_layer()?, top];
    spec.cmd = Some(vec!["/bin/sh".into()]);
    let mut host_inputs = tree.host_files();
    host_inputs.extend(busybox::host_inputs()?);
    Ok(Recipe { spec, host_inputs })
}

/// Builds `recipe` into `dir` unless an up-to-date build is already there.
/// `extra` is whatever else the content depends on (it goes into the stamp).
pub fn build_cached(dir: &Path, recipe: &Recipe, extra: &str) -> Result<BuiltImage, ImageError> {
    build_with(dir, &recipe.host_inputs, extra, |d| {
        build_image(&recipe.spec, d)
    })
}

fn build_with(
    dir: &Path,
    inputs: &[PathBuf],
    extra: &str,
    build: impl FnOnce(&Path) -> Result<BuiltImage, ImageError>,
) -> Result<BuiltImage, ImageError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stamp = image_stamp(&name, inputs, extra)?;
    build_stamped(dir, &stamp, build)
}

/// The stamp of image `name`: its inputs, `extra` and the builder's source.
fn image_stamp(name: &str, inputs: &[PathBuf], extra: &str) -> Result<String, ImageError> {
    stamp(
        &format!("{name}\n{extra}\n{}", source_fingerprint()),
        inputs,
    )
}

fn build_stamped(
    dir: &Path,
    stamp: &str,
    build: impl FnOnce(&Path) -> Result<BuiltImage, ImageError>,
) -> Result<BuiltImage, ImageError> {
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // One lock per image, so building one image never waits on another.
    let _lock = DirLock::acquire(&parent.join(format!(".{name}.lock.d")))?;
    let start = std::time::Instant::now();
    let built = build_or_reuse(dir, stamp, build)?;
    tracing::info!(image = %built.reference(), secs = start.elapsed().as_secs_f64(), "test image ready");
    Ok(built)
}

/// Names of the small images [`build_one`] knows (the large one needs a cache dir).
pub const SMALL_IMAGES: &[&str] = &[
    "busybox",
    "tools",
    "layered",
    "busybox-index",
    "mpi",
    "mpi-old",
];

/// Builds (or reuses) one of [`SMALL_IMAGES`] into `out_dir/<name>/`.
pub fn build_one(out_dir: &Path, name: &str) -> Result<BuiltImage, ImageError> {
    let dir = out_dir.join(name);
    let bb_inputs = busybox::host_inputs()?;
    match name {
        "busybox" => build_with(&dir, &bb_inputs, "", |d| build_image(&busybox::spec()?, d)),
        "tools" => build_cached(&dir, &hostbins("tools", TOOLS)?, &TOOLS.join(" ")),
        "layered" => build_with(&dir, &bb_inputs, "", build_layered),
        "busybox-index" => build_with(&dir, &bb_inputs, "", build_index),
        "mpi" | "mpi-old" => {
            let work = out_dir.join(format!(".{name}-build"));
            build_cached(&dir, &mpi::recipe(name, &work)?, mpi::PINGPONG_C)
        }
        other => Err(ImageError::InvalidEntry {
            path: other.to_string(),
            reason: format!("unknown test image; known: {SMALL_IMAGES:?} and large"),
        }),
    }
}

/// Builds every test image into `out_dir/<name>/` (the large one into
/// `cache_dir/large`, linked from `out_dir/large`), reusing up-to-date builds.
pub fn build_all(out_dir: &Path, cache_dir: &Path) -> Result<Catalog, ImageError> {
    fs::create_dir_all(out_dir).map_err(ImageError::io("cannot create", out_dir))?;
    Ok(Catalog {
        busybox: build_one(out_dir, "busybox")?,
        tools: build_one(out_dir, "tools")?,
        layered: build_one(out_dir, "layered")?,
        layered_expected_tree: out_dir.join("layered").join(EXPECTED_TREE),
        busybox_index: build_one(out_dir, "busybox-index")?,
        mpi: build_one(out_dir, "mpi")?,
        mpi_old: build_one(out_dir, "mpi-old")?,
        large: build_large(out_dir, cache_dir, &busybox::host_inputs()?)?,
    })
}

fn build_layered(dir: &Path) -> Result<BuiltImage, ImageError> {
    let built = build_image(&layered::spec()?, dir)?;
    // Flatten the blobs actually written, so the expectation covers the tar writer too.
    let tree = flatten_image(&built.layout_dir, &built.manifest_digest)?;
    let json = serde_json::to_vec_pretty(&tree).map_err(ImageError::json(EXPECTED_TREE))?;
    let path = dir.join(EXPECTED_TREE);
    fs::write(&path, json).map_err(ImageError::io("cannot write", &path))?;
    Ok(built)
}

/// The architecture of the index's second entry: one the host is not.
pub fn other_arch() -> &'static str {
    if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    }
}

fn build_index(dir: &Path) -> Result<BuiltImage, ImageError> {
    let writer = LayoutWriter::create(&dir.join("layout"))?;
    let host_spec = busybox::spec()?;
    let host = writer.write_image(&host_spec)?;
    let arch = other_arch();
    let mut other = ImageSpec::new("busybox-index", "latest");
    other.architecture = arch.to_string();
    other.cmd = Some(vec!["/bin/sh".into()]);
    other.labels = BTreeMap::from([("berth.test.platform".to_string(), format!("linux/{arch}"))]);
    other.layers.push(
        Layer::new()
            .with(Entry::file(
                "/etc/os-release",
                busybox::os_release(&format!("berth-test-busybox-{arch}")),
                0o644,
            ))
            .with(Entry::file("/PLATFORM", format!("linux/{arch}\n"), 0o644)),
    );
    let other = writer.write_image(&other)?;
    let platforms = [&host, &other]
        .iter()
        .map(|m| {
            let p = m
                .manifest
                .platform
                .clone()
                .expect("write_image sets the platform");
            PlatformManifest {
                os: p.os,
                architecture: p.architecture,
                digest: m.manifest.digest.clone(),
            }
        })
        .collect();
    let index = writer.write_index(vec![host.manifest.clone(), other.manifest.clone()])?;
    let spec = ImageSpec::new("busybox-index", "latest");
    writer.finish(&spec.tag, &index)?;
    package(&writer, &spec, &host, &index, platforms, dir)
}

/// Builds or reuses the large image in `cache_dir/large-<stamp>` and links
/// it from `out_dir/large`; falls back to `out_dir` when the cache dir is
/// unusable. Keying the cache by stamp lets processes built from different
/// builder versions share the cache without rebuilding over each other.
fn build_large(
    out_dir: &Path,
    cache_dir: &Path,
    bb_inputs: &[PathBuf],
) -> Result<BuiltImage, ImageError> {
    let link = out_dir.join("large");
    let stamp = image_stamp("large", bb_inputs, &format!("seed={:x}", large::SEED))?;
    let build = |d: &Path| build_image(&large::spec()?, d);
    if let Err(e) = fs::create_dir_all(cache_dir) {
        tracing::warn!(cache = %cache_dir.display(), error = %e, "cache dir unusable; building the large image uncached");
        if fs::read_link(&link).is_ok() {
            fs::remove_file(&link).map_err(ImageError::io("cannot remove", &link))?;
        }
        return build_stamped(&link, &stamp, build);
    }
    let cached_dir = keyed_dir(cache_dir, "large", &stamp);
    let mut built = build_stamped(&cached_dir, &stamp, build)?;
    prune(cache_dir, "large", LARGE_VERSIONS_KEPT);
    if fs::read_link(&link).ok().as_deref() != Some(cached_dir.as_path()) {
        // Replace whatever is there (an old uncached build or a stale link) atomically.
        let tmp = out_dir.join(format!(".large.link-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        symlink(&cached_dir, &tmp).map_err(ImageError::io("cannot create symlink", &tmp))?;
        if link.is_dir() && !link.is_symlink() {
            fs::remove_dir_all(&link).map_err(ImageError::io("cannot remove", &link))?;
        }
        fs::rename(&tmp, &link).map_err(ImageError::io("cannot rename symlink to", &link))?;
    }
    built.relocate(&link);
    Ok(built)
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
