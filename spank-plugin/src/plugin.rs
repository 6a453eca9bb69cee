//! The symbols slurmd looks for when it loads a SPANK plugin, and the callbacks.
//!
//! `plugin_version` must equal the `SLURM_VERSION_NUMBER` of the Slurm that loads
//! us; it comes from the installed header, so a rebuild against a new Slurm is all
//! an upgrade needs.

#![allow(non_upper_case_globals)]

use slurm_headers::{spank_t, SLURM_VERSION_NUMBER};

use crate::ffi::guard;

/// The plugin's name, as `SPANK_PLUGIN(berth, 1)` would declare it.
#[no_mangle]
pub static plugin_name: [u8; 6] = *b"berth\0";
/// Slurm's plugin type for SPANK plugins.
#[no_mangle]
pub static plugin_type: [u8; 6] = *b"spank\0";
/// The Slurm release this plugin was built against.
#[no_mangle]
pub static plugin_version: libc::c_uint = SLURM_VERSION_NUMBER;
/// The SPANK plugin interface version we implement.
#[no_mangle]
pub static spank_plugin_version: libc::c_uint = 1;

/// Called in every Slurm context (local srun/sbatch, remote slurmstepd, slurmd) when
/// the plugin is loaded.
///
/// # Safety
/// Called by Slurm with its own handle; `argv` holds `argc` C strings from plugstack.conf.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init(
    _sp: spank_t,
    argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    guard("slurm_spank_init", || -> Result<(), String> {
        crate::log::debug(&format!("plugin loaded with {argc} plugstack.conf argument(s)"));
        Ok(())
    })
}
