//! Planning against fake images holding the host's MPICH (Debian package
//! libmpich12, listed in scripts/debian-packages).

use super::*;
use crate::mpi::abi::Compat;

fn triplet_dir() -> String {
    format!("/usr/lib/{}", crate::libpath::triplet())
}

fn host_mpich() -> PathBuf {
    std::fs::canonicalize(format!("{}/libmpich.so.12", triplet_dir()))
        .expect("the host has MPICH (libmpich12)")
}

/// An image with the host's libc and a stand-in MPICH library named
/// `file` behind the soname link libmpich.so.12. Only the ELF header is
/// copied: planning reads no more of the image's library.
fn image(file: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join(triplet_dir().trim_start_matches('/'));
    std::fs::create_dir_all(&lib).unwrap();
    let libc = std::fs::canonicalize(format!("{}/libc.so.6", triplet_dir())).unwrap();
    std::fs::copy(libc, lib.join("libc.so.6")).unwrap();
    let head = &std::fs::read(host_mpich()).unwrap()[..64];
    std::fs::write(lib.join(file), head).unwrap();
    std::os::unix::fs::symlink(file, lib.join("libmpich.so.12")).unwrap();
    dir
}

fn config(compat: Compat) -> Config {
    Config {
        libs: vec![PathBuf::from(format!("{}/libmpich.so.12", triplet_dir()))],
        compat,
        ..Default::default()
    }
}

fn plan_in(dir: &tempfile::TempDir, cfg: &Config) -> Result<Plan, MpiError> {
    plan(cfg, &Rootfs::open(dir.path()).unwrap())
}

#[test]
fn replaces_the_image_library_and_adds_what_it_lacks() {
    let dir = image("libmpich.so.12.2.2");
    let p = plan_in(&dir, &config(Compat::Strict)).unwrap();
    let image_lib = Path::new(&triplet_dir()).join("libmpich.so.12.2.2");
    assert_eq!(p.replace, [(host_mpich(), image_lib)]);
    // MPICH's own dependencies (hwloc, ...) are not in the image: added,
    // transitively, but never glibc's libraries.
    let added: Vec<String> = p
        .add
        .iter()
        .map(|(_, c)| c.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        added.iter().any(|n| n.starts_with("libhwloc.so.")),
        "{added:?}"
    );
    assert!(!added.iter().any(|n| glibc::is_glibc(n)), "{added:?}");
    assert!(p.add.iter().all(|(_, c)| c.starts_with(LIB_DIR)));
    // The image's glibc is the host's: nothing to replace.
    assert!(p.glibc.is_empty(), "{:?}", p.glibc);
}

#[test]
fn refuses_another_abi_naming_both_versions() {
    let dir = image("libmpich.so.11.0.0");
    let err = plan_in(&dir, &config(Compat::Major)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MpiError::Incompatible(_)), "{msg}");
    assert!(
        msg.contains("(12.2.2)")
            && msg.contains("libmpich.so.11.0.0 (11.0.0)")
            && msg.contains("the major versions differ"),
        "{msg}"
    );
    // A newer minor in the image passes `major` but not `full`.
    let dir = image("libmpich.so.12.9.0");
    assert!(plan_in(&dir, &config(Compat::Major)).is_ok());
    let msg = plan_in(&dir, &config(Compat::Full))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("minor version is older") && msg.contains("rule full"),
        "{msg}"
    );
}

#[test]
fn missing_library_and_bad_config_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let msg = plan_in(&dir, &config(Compat::Major))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("the image has no libmpich.so.12") && msg.contains("(12.2.2)"),
        "{msg}"
    );
    let mut cfg = config(Compat::Major);
    cfg.libs = vec![PathBuf::from("/nonexistent/libmpi.so.40")];
    let msg = plan_in(&dir, &cfg).unwrap_err().to_string();
    assert!(msg.contains("does not exist on the host"), "{msg}");
}

#[test]
fn dependency_libraries_replace_or_are_added() {
    let dir = image("libmpich.so.12.2.2");
    let libc = Path::new(&triplet_dir()).join("libc.so.6");
    let hwloc = std::fs::canonicalize(format!("{}/libhwloc.so.15", triplet_dir()))
        .expect("MPICH depends on hwloc");
    let mut cfg = config(Compat::Major);
    cfg.dependency_libs = vec![libc.clone(), hwloc.clone()];
    let p = plan_in(&dir, &cfg).unwrap();
    // The image has libc.so.6: the host's goes over it, whatever its version.
    assert!(p
        .replace
        .contains(&(std::fs::canonicalize(&libc).unwrap(), libc)));
    // It lacks hwloc: added under its soname.
    assert!(p
        .add
        .contains(&(hwloc, Path::new(LIB_DIR).join("libhwloc.so.15"))));
}
