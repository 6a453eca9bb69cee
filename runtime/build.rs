//! Link the `berth` binary as a non-PIE executable: the runtime is exec'd
//! three times per container lifecycle and a PIE pays ~18k relative
//! relocations (and the page faults they cause) at every start.
//!
//! glibc targets only: a musl target links a static PIE with musl's own
//! start file, which `-no-pie` would break (a crash at start). The release
//! musl build asks for a non-PIE itself (`-C relocation-model=static`,
//! scripts/build-release), and rustc then picks the matching start file.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
