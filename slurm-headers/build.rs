//! Generates Rust bindings of the installed `slurm/spank.h`.
//!
//! The header comes from the site's Slurm build, so the bindings always match the
//! slurmd that loads the plugin. A missing header is the common set-up mistake, so
//! it fails with one line that names the Debian package to install.

use std::path::PathBuf;

/// Include directories searched for `slurm/spank.h`, in order; `SLURM_INCLUDE_DIR` wins.
fn include_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("SLURM_INCLUDE_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.extend(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    dirs
}

fn main() {
    println!("cargo:rerun-if-env-changed=SLURM_INCLUDE_DIR");
    let Some(dir) = include_dirs()
        .into_iter()
        .find(|d| d.join("slurm/spank.h").is_file())
    else {
        eprintln!(
            "error: slurm/spank.h not found in $SLURM_INCLUDE_DIR, /usr/include or /usr/local/include: \
             install the Debian package libslurm-dev (apt-get install libslurm-dev) or set SLURM_INCLUDE_DIR"
        );
        std::process::exit(1);
    };
    let header = dir.join("slurm/spank.h");
    println!("cargo:rerun-if-changed={}", header.display());

    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", dir.display()))
        .allowlist_function("spank_.*|slurm_(error|info|verbose|debug|debug2|debug3|spank_log)")
        .allowlist_type("spank_.*|spank_t|spank_err_t|spank_item_t|spank_context_t|spank_option")
        .allowlist_var("ESPANK_.*|S_.*|SPANK_.*|SLURM_VERSION_NUMBER")
        // Values Slurm *returns* must not be Rust enums: a value the enum lacks
        // (ESPANK_SUCCESS = 0 is not a variant of spank_err, a context added by a
        // newer Slurm) would be undefined behaviour. Rust enums stay only for
        // values we pass in (spank_item).
        .default_enum_style(bindgen::EnumVariation::Rust {
            non_exhaustive: false,
        })
        .newtype_enum("slurm_err_t")
        // A module of constants: a newtype would clash with the function
        // `spank_context()` of the same name.
        .constified_enum_module("spank_context")
        .derive_debug(true)
        .layout_tests(false)
        .generate()
        .unwrap_or_else(|e| {
            eprintln!("error: bindgen could not parse {}: {e}", header.display());
            std::process::exit(1);
        });
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("spank.rs"))
        .unwrap_or_else(|e| {
            eprintln!("error: cannot write bindings to {}: {e}", out.display());
            std::process::exit(1);
        });
}
