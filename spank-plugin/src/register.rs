//! Registering berth's options with Slurm.
//!
//! Slurm keeps pointers to the option table for the life of the process, so the
//! C strings and `spank_option` records are built once and never freed.

use std::ffi::CString;

use once_cell::sync::Lazy;
use slurm_headers::{spank_option, spank_option_register, spank_t};

use crate::options::{Arg, OPTIONS};

/// The C-side table, one record per entry of [`OPTIONS`]; `val` is the index.
struct Table(Vec<spank_option>);

// SAFETY: the records only point at leaked, immutable C strings.
unsafe impl Send for Table {}
unsafe impl Sync for Table {}

fn leak(s: &str) -> *mut libc::c_char {
    CString::new(s)
        .expect("option texts have no NUL")
        .into_raw()
}

static TABLE: Lazy<Table> = Lazy::new(|| {
    Table(
        OPTIONS
            .iter()
            .enumerate()
            .map(|(i, def)| {
                let (has_arg, arginfo) = match def.arg {
                    Arg::None => (0, std::ptr::null_mut()),
                    Arg::Required(info) => (1, leak(info)),
                    Arg::Optional(info) => (2, leak(info)),
                };
                spank_option {
                    name: leak(def.name),
                    arginfo,
                    usage: leak(def.usage),
                    has_arg,
                    val: i as libc::c_int,
                    cb: Some(crate::plugin::option_callback),
                }
            })
            .collect(),
    )
});

/// Errors registering options.
#[derive(Debug, thiserror::Error)]
#[error("cannot register option --{0} with Slurm (spank error {1}): another plugin in plugstack.conf may use the same name")]
pub struct RegisterError(&'static str, i32);

/// Registers every `--container-*` option with Slurm.
pub fn register_all(sp: spank_t) -> Result<(), RegisterError> {
    for (i, def) in OPTIONS.iter().enumerate() {
        let record = &TABLE.0[i] as *const spank_option as *mut spank_option;
        // SAFETY: `sp` is Slurm's live handle; the record lives forever (static).
        let rc = unsafe { spank_option_register(sp, record) };
        if rc.0 != 0 {
            return Err(RegisterError(def.name, rc.0 as i32));
        }
    }
    Ok(())
}
