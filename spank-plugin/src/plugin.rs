//! The symbols slurmd looks for when it loads a SPANK plugin, and the callbacks.
//!
//! `plugin_version` must equal the `SLURM_VERSION_NUMBER` of the Slurm that loads
//! us; it comes from the installed header, so a rebuild against a new Slurm is all
//! an upgrade needs.

#![allow(non_upper_case_globals)]

use std::ffi::CStr;
use std::sync::Mutex;

use slurm_headers::{spank_context, spank_context_t, spank_t, SLURM_VERSION_NUMBER};

use crate::args::PluginArgs;
use crate::ffi::{guard, SPANK_FAIL, SPANK_OK};
use crate::options::{Request, OPTIONS};

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

/// Per-process plugin state: each srun, sbatch and slurmstepd has its own.
#[derive(Debug, Default)]
struct State {
    args: Option<PluginArgs>,
    request: Request,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    // A poisoned lock only means an earlier callback panicked (and was reported):
    // the data is still usable.
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(State::default))
}

/// The plugstack.conf arguments as C strings.
///
/// # Safety
/// `argv` must hold `argc` valid C strings.
unsafe fn plugstack_args(argc: libc::c_int, argv: *mut *mut libc::c_char) -> Vec<String> {
    (0..argc.max(0) as usize)
        .map(|i| {
            unsafe { CStr::from_ptr(*argv.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// Called in every Slurm context when the plugin is loaded: validates the
/// plugstack.conf arguments and registers options.
///
/// A bad argument fails every step (srun reports it, slurmstepd refuses the
/// step), but not slurmd itself: a typo in plugstack.conf must not take the
/// node down, and slurmstepd re-reads the file for every step once it is fixed.
///
/// # Safety
/// Called by Slurm with its own handle; `argv` holds `argc` C strings from plugstack.conf.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init(
    sp: spank_t,
    argc: libc::c_int,
    argv: *mut *mut libc::c_char,
) -> libc::c_int {
    let args = unsafe { plugstack_args(argc, argv) };
    let ctx = unsafe { spank_context() };
    if ctx == spank_context_t::S_CTX_SLURMD {
        if let Err(e) = PluginArgs::parse(args.iter().map(String::as_str)) {
            crate::log::error(&format!(
                "plugstack.conf: {e} (every container step will fail until this is fixed)"
            ));
        }
        return SPANK_OK;
    }
    guard(
        "plugstack.conf",
        || -> Result<(), Box<dyn std::error::Error>> {
            let parsed = PluginArgs::parse(args.iter().map(String::as_str))?;
            with_state(|s| s.args = Some(parsed));
            if ctx != spank_context_t::S_CTX_JOB_SCRIPT {
                crate::register::register_all(sp)?;
            }
            Ok(())
        },
    )
}

/// Slurm calls this for each `--container-*` option given, locally (srun,
/// sbatch) and again in slurmstepd (`remote` = 1).
pub unsafe extern "C" fn option_callback(
    val: libc::c_int,
    optarg: *const libc::c_char,
    _remote: libc::c_int,
) -> libc::c_int {
    let Some(def) = usize::try_from(val).ok().and_then(|i| OPTIONS.get(i)) else {
        return SPANK_FAIL;
    };
    let arg = (!optarg.is_null()).then(|| {
        unsafe { CStr::from_ptr(optarg) }
            .to_string_lossy()
            .into_owned()
    });
    let rc = guard("invalid option", || {
        with_state(|s| s.request.apply(def, arg.as_deref()))
    });
    if rc == SPANK_OK {
        SPANK_OK
    } else {
        SPANK_FAIL
    }
}

/// Called after options are parsed, in every context: applies the
/// `BERTH_CONTAINER_*` defaults and refuses a container request this build
/// cannot honour, so a job never silently runs outside its image.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init_post_opt(
    _sp: spank_t,
    _argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    guard("container", || -> Result<(), Box<dyn std::error::Error>> {
        with_state(|s| s.request.apply_env_defaults(|k| std::env::var(k).ok()))?;
        match with_state(|s| s.request.image.clone()) {
            Some(image) => Err(format!(
                "cannot run {image}: this build of berth cannot launch containers from Slurm yet; run the step without --container-image"
            )
            .into()),
            None => Ok(()),
        }
    })
}
