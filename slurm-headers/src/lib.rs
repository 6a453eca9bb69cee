//! Raw bindings of the installed `slurm/spank.h`, generated at build time by bindgen.
//!
//! Only the SPANK API is exposed: the plugin entry points' types, option
//! registration, item getters and Slurm's logging functions. Everything here is
//! `unsafe` C; the `spank-berth` crate wraps it.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/spank.rs"));
