//! Link the `berth` binary as a non-PIE executable: the runtime is exec'd
//! three times per container lifecycle and a PIE pays ~18k relative
//! relocations (and the page faults they cause) at every start.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
