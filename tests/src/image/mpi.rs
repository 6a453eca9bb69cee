//! The `mpi` and `mpi-old` test images: busybox, the `pingpong` MPI program
//! (tests/mpi/pingpong.c, compiled here with the host's `mpicc`) and the
//! host's MPICH library closure, with MPICH turned into "another build of the
//! same ABI": its `MPI_Get_library_version` string is patched in place
//! ([`HOST_MARK`] -> [`IMAGE_MARK`], same length), so the program tells
//! which library it really loaded (the image's, or the host's that the MPI
//! hook binds over it).
//!
//! `mpi-old` stores the library as `libmpich.so.<major-1>.0.0` behind the
//! same soname link, the way an image built with an ABI-incompatible MPICH
//! would look to the hook (which reads versions from real file names).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::busybox::{self, base_layer, etc_entries};
use super::catalog::Recipe;
use super::elf::{add_with_libraries, glob, multiarch_triplet};
use super::hostfs::{HostNode, HostTree};
use super::layer::Entry;
use super::oci::ImageSpec;
use super::ImageError;

/// The program's source, built into the images.
pub const PINGPONG_C: &str = include_str!("../../mpi/pingpong.c");

/// Where the program is in the images.
pub const PINGPONG: &str = "/pingpong";

/// The start of the host MPICH's version string.
pub const HOST_MARK: &[u8] = b"MPICH Version:";

/// What the image's copy says instead (same length, so offsets hold).
pub const IMAGE_MARK: &[u8] = b"MPICH-IMAGE V:";

/// The host MPICH's soname, as the program names it.
pub const SONAME: &str = "libmpich.so.12";

/// The host's MPICH library behind [`SONAME`] (resolved).
pub fn host_library() -> Result<PathBuf, ImageError> {
    let p = PathBuf::from(format!("/usr/lib/{}/{SONAME}", multiarch_triplet()));
    fs::canonicalize(&p).map_err(ImageError::io(
        "cannot find MPICH (install libmpich-dev, see scripts/debian-packages) at",
        &p,
    ))
}

/// Compiles [`PINGPONG_C`] with the host's `mpicc` into `build_dir`.
pub fn compile(build_dir: &Path) -> Result<PathBuf, ImageError> {
    fs::create_dir_all(build_dir).map_err(ImageError::io("cannot create", build_dir))?;
    let src = build_dir.join("pingpong.c");
    let bin = build_dir.join("pingpong");
    // The binary is an input of the image's cache stamp (by mtime): rebuild
    // it only when the source changed, so an unchanged image is reused.
    if write_if_changed(&src, PINGPONG_C.as_bytes())? == Fresh::Same && bin.is_file() {
        return Ok(bin);
    }
    let out = Command::new("mpicc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .map_err(|e| ImageError::io("cannot run mpicc (install libmpich-dev) for", &src)(e))?;
    if !out.status.success() {
        let reason = format!(
            "mpicc failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return Err(ImageError::io("cannot compile", &src)(
            std::io::Error::other(reason),
        ));
    }
    Ok(bin)
}

/// Whether [`write_if_changed`] wrote.
#[derive(Debug, PartialEq, Eq)]
enum Fresh {
    Same,
    Written,
}

/// Writes `data` to `path` unless it already holds exactly that, keeping the
/// file's mtime (a cache stamp input) when nothing changed.
fn write_if_changed(path: &Path, data: &[u8]) -> Result<Fresh, ImageError> {
    if fs::read(path).is_ok_and(|old| old == data) {
        return Ok(Fresh::Same);
    }
    fs::write(path, data).map_err(ImageError::io("cannot write", path))?;
    Ok(Fresh::Written)
}

/// `data` with [`HOST_MARK`] replaced by [`IMAGE_MARK`]; fails unless the
/// mark occurs exactly once (another MPICH build would need a new mark).
pub fn patch_version(data: &[u8], lib: &Path) -> Result<Vec<u8>, ImageError> {
    let hits: Vec<usize> = data
        .windows(HOST_MARK.len())
        .enumerate()
        .filter(|(_, w)| *w == HOST_MARK)
        .map(|(i, _)| i)
        .collect();
    let [at] = hits[..] else {
        return Err(ImageError::InvalidEntry {
            path: lib.display().to_string(),
            reason: format!(
                "expected the version mark {:?} once, found it {} times",
                String::from_utf8_lossy(HOST_MARK),
                hits.len()
            ),
        });
    };
    let mut out = data.to_vec();
    out[at..at + IMAGE_MARK.len()].copy_from_slice(IMAGE_MARK);
    Ok(out)
}

/// The recipe of image `name` (`mpi` or `mpi-old`), its work files (the
/// compiled program, the patched library) under `build_dir`.
pub fn recipe(name: &str, build_dir: &Path) -> Result<Recipe, ImageError> {
    let old = name == "mpi-old";
    let lib = host_library()?;
    let bin = compile(build_dir)?;
    let dir = lib
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tree = HostTree::new();
    // The program needs MPICH (by soname, so the link is added too) and
    // libc; MPICH's closure holds both. UCX (Debian's MPICH is ch4:ucx)
    // dlopens its transports (shared memory, CMA, ...) from a directory
    // next to it: without them ranks on one node talk over TCP.
    let mut objects = vec![format!("{dir}/{SONAME}")];
    objects.extend(
        glob(Path::new(&format!("{dir}/ucx/libuct_*.so.0")))
            .iter()
            .map(|p| p.to_string_lossy().into_owned()),
    );
    let objects: Vec<&str> = objects.iter().map(String::as_str).collect();
    add_with_libraries(&mut tree, &objects)?;
    let data = fs::read(&lib).map_err(ImageError::io("cannot read", &lib))?;
    let patched = build_dir.join("libmpich-image.so");
    write_if_changed(&patched, &patch_version(&data, &lib)?)?;
    let lib_image = lib.to_string_lossy().into_owned();
    let old_name = old_file_name(&lib)?;
    let mut top = layer_with(&tree, |path, node| match node {
        HostNode::File(_, mode) if path == lib_image && old => Some(Entry::host_file(
            &format!("{dir}/{old_name}"),
            &patched,
            *mode,
        )),
        HostNode::File(_, mode) if path == lib_image => {
            Some(Entry::host_file(path, &patched, *mode))
        }
        HostNode::Symlink(_) if old && path == format!("{dir}/{SONAME}") => {
            Some(Entry::symlink(path, &old_name))
        }
        _ => None,
    });
    top.push(Entry::host_file(PINGPONG, &bin, 0o755));
    for e in etc_entries(&format!("berth-test-{name}")) {
        top.push(e);
    }
    let mut spec = ImageSpec::new(name, "latest");
    spec.layers = vec![base_layer()?, top];
    spec.cmd = Some(vec![PINGPONG.into()]);
    let mut host_inputs = tree.host_files();
    host_inputs.extend(busybox::host_inputs()?);
    host_inputs.push(bin);
    Ok(Recipe { spec, host_inputs })
}

/// `libmpich.so.12.2.2` -> `libmpich.so.11.0.0`: the file name of the
/// library in `mpi-old`, an older major.
pub fn old_file_name(lib: &Path) -> Result<String, ImageError> {
    let name = lib.file_name().unwrap_or_default().to_string_lossy();
    let bad = || ImageError::InvalidEntry {
        path: lib.display().to_string(),
        reason: "expected a file name libNAME.so.MAJOR.MINOR.PATCH".into(),
    };
    let (base, version) = name.split_once(".so.").ok_or_else(bad)?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .filter(|m| *m > 0)
        .ok_or_else(bad)?;
    Ok(format!("{base}.so.{}.0.0", major - 1))
}

/// The tree as a layer, each node replaced by `swap`'s entry when it gives one.
fn layer_with(
    tree: &HostTree,
    swap: impl Fn(&str, &HostNode) -> Option<Entry>,
) -> super::layer::Layer {
    let mut layer = super::layer::Layer::new();
    for (path, node) in tree.nodes() {
        layer.push(swap(path, node).unwrap_or_else(|| match node {
            HostNode::File(host, mode) => Entry::host_file(path, host, *mode),
            HostNode::Symlink(target) => Entry::symlink(path, target),
        }));
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_the_version_mark_once() {
        let lib = Path::new("libx.so.1");
        let data = b"xxMPICH Version:\t%s\nyy".to_vec();
        let out = patch_version(&data, lib).unwrap();
        assert_eq!(out.len(), data.len());
        assert!(out.windows(IMAGE_MARK.len()).any(|w| w == IMAGE_MARK));
        assert!(patch_version(b"none", lib).is_err());
        let twice = [HOST_MARK, HOST_MARK].concat();
        assert!(patch_version(&twice, lib)
            .unwrap_err()
            .to_string()
            .contains("2 times"));
        assert_eq!(IMAGE_MARK.len(), HOST_MARK.len());
    }

    #[test]
    fn old_name_has_an_older_major() {
        let n = old_file_name(Path::new("/usr/lib/libmpich.so.12.2.2")).unwrap();
        assert_eq!(n, "libmpich.so.11.0.0");
        assert!(old_file_name(Path::new("/usr/lib/libmpich.so")).is_err());
        assert!(old_file_name(Path::new("/usr/lib/libmpich.so.0.1")).is_err());
    }
}
