//! The symbols slurmd looks for when it loads a SPANK plugin, and the callbacks.
//!
//! `plugin_version` must equal the `SLURM_VERSION_NUMBER` of the Slurm that loads
//! us; it comes from the installed header, so a rebuild against a new Slurm is all
//! an upgrade needs.

#![allow(non_upper_case_globals)]

use std::ffi::CStr;
use std::sync::Mutex;

use slurm_headers::{spank_context, spank_t, SLURM_VERSION_NUMBER};

use crate::args::PluginArgs;
use crate::ffi::{guard, SPANK_FAIL, SPANK_OK};
use crate::launch::{self, Container};
use crate::options::{Request, OPTIONS};
use crate::spank::Spank;

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
    /// The step's container on this node (slurmstepd only).
    container: Option<Container>,
    /// The task's working directory before it joined the container.
    job_cwd: Option<std::path::PathBuf>,
    /// An error from a callback whose failure Slurm does not show to the user,
    /// raised again in the task callbacks, whose errors reach srun.
    held: Option<String>,
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
/// step), but not slurmd itself nor its job prolog/epilog: a typo in
/// plugstack.conf must neither stop slurmd nor drain the node (Slurm drains a
/// node whose required plugin fails in the epilog), and slurmstepd re-reads the
/// file for every step once it is fixed.
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
    if ctx == spank_context::S_CTX_SLURMD || ctx == spank_context::S_CTX_JOB_SCRIPT {
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
            crate::register::register_all(sp)?;
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

/// Makes the step's container from slurmstepd (as root, once per node and step).
fn make_container(sp: Spank, request: &Request) -> Result<Container, String> {
    let job = sp.job().map_err(|e| e.to_string())?;
    let groups = sp.supplementary_gids().map_err(|e| e.to_string())?;
    // Names matter only to a container being made; a step joining a named
    // container spares the site's NSS (LDAP, SSSD) the lookups.
    let user = match request.image {
        Some(_) => crate::user::JobUser::lookup(job.uid, job.gid, &groups),
        None => crate::user::JobUser {
            supplementary: groups,
            ..Default::default()
        },
    };
    // slurmstepd execs a batch script from slurmd's spool: make it visible inside.
    let script_dir = if job.step_id == crate::spank::BATCH_STEP {
        let argv = sp.argv().map_err(|e| e.to_string())?;
        argv.first()
            .and_then(|s| std::path::Path::new(s).parent().map(|p| p.to_path_buf()))
    } else {
        None
    };
    let env = |k: &str| sp.getenv(k).ok().flatten().filter(|v| !v.is_empty());
    let (node_id, nnodes, restart_count) = sp.step_counts();
    let facts = crate::facts::StepFacts {
        node_id,
        nnodes,
        // srun's steps carry the step's list; a batch step only the job's.
        nodelist: env("SLURM_STEP_NODELIST").or_else(|| env("SLURM_JOB_NODELIST")),
        restart_count,
        user: user.name.clone(),
        gpus: crate::gpus::host_gpus(env).map(|(_, list)| list),
    };
    Container::create(&args(), request, &job, &user, script_dir.as_deref(), &facts)
        .map_err(|e| e.to_string())
}

fn args() -> PluginArgs {
    with_state(|s| s.args.clone().unwrap_or_default())
}

/// Called after options are parsed, in every context: applies the
/// `BERTH_CONTAINER_*` defaults; in slurmstepd (as root, once per node and step)
/// makes the step's container.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init_post_opt(
    sp: spank_t,
    _argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    let sp = Spank(sp);
    let remote = unsafe { spank_context() } == spank_context::S_CTX_REMOTE;
    guard("container", || -> Result<(), Box<dyn std::error::Error>> {
        if remote {
            // The job's environment is what srun or sbatch saw.
            with_state(|s| {
                s.request
                    .apply_env_defaults(|k| sp.getenv(k).ok().flatten())
            })?;
        } else {
            with_state(|s| s.request.apply_env_defaults(|k| std::env::var(k).ok()))?;
        }
        let request = with_state(|s| s.request.clone());
        // `--container-name` alone joins the job's named container (Pyxis's
        // semantics); without either option the step is not berth's.
        if request.image.is_none() && request.name.is_none() {
            return Ok(());
        }
        let allocator = unsafe { spank_context() } == spank_context::S_CTX_ALLOCATOR;
        if allocator && !args().sbatch_support {
            return Err("--container-image is disabled for sbatch and salloc on this cluster (sbatch_support=0 in plugstack.conf): use it with srun".into());
        }
        if !remote {
            return Ok(());
        }
        let made = make_container(sp, &request);
        match made {
            Ok(c) => with_state(|s| s.container = Some(c)),
            // Slurm logs a failure here only in slurmd's log: hold it for the tasks.
            Err(e) => with_state(|s| s.held = Some(e)),
        }
        Ok(())
    })
}

/// Called in each task, still privileged, right after fork: joins the step's
/// container.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_init_privileged(
    sp: spank_t,
    _argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    crate::ffi::guard_quiet("container", || -> Result<(), Option<String>> {
        // The held error is the node's, not the task's: its first task
        // reports it and the others fail quietly, so srun shows it once per node.
        if let Some(e) = with_state(|s| s.held.clone()) {
            let first = !Spank(sp).local_task_id().is_ok_and(|t| t != 0);
            return Err(first.then_some(e));
        }
        with_state(|s| {
            let Some(c) = s.container.as_ref() else {
                return Ok(());
            };
            s.job_cwd = std::env::current_dir().ok();
            c.join()
        })
        .map_err(|e| Some(e.to_string()))
    })
}

/// Called in each task as the job user, just before exec: sets the merged
/// environment and the working directory inside the container.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_init(
    sp: spank_t,
    _argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    let sp = Spank(sp);
    guard("container", || -> Result<(), Box<dyn std::error::Error>> {
        let Some((created, keep)) = with_state(|s| {
            s.container
                .as_ref()
                .map(|c| (c.created.clone(), s.request.env.clone()))
        }) else {
            return Ok(());
        };
        let job_has = |name: &str| sp.getenv(name).ok().flatten().is_some();
        for var in crate::env::merge(&created.env, job_has, &keep) {
            sp.setenv(&var.name, &var.value)?;
        }
        // The container's GPUs, not this step's: a named container made by an
        // earlier step keeps the GPUs it was made with.
        let held = created.gpus.clone().unwrap_or_default();
        let env = |name: &str| sp.getenv(name).ok().flatten();
        for (name, value) in crate::gpus::task_vars(&held, env)? {
            sp.setenv(name, &value)?;
        }
        with_state(|s| {
            let cwd = s.job_cwd.clone();
            s.container
                .as_ref()
                .map(|c| c.enter_workdir(cwd.as_deref()))
        })
        .transpose()?;
        Ok(())
    })
}

/// Called when the step ends on this node: removes the step's container unless
/// it is a named one that later steps of the job reuse.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_exit(
    _sp: spank_t,
    _argc: libc::c_int,
    _argv: *mut *mut libc::c_char,
) -> libc::c_int {
    guard("cleanup", || -> Result<(), launch::LaunchError> {
        let Some((id, named)) = with_state(|s| {
            s.container
                .take()
                .map(|c| (c.created.id.clone(), s.request.name.is_some()))
        }) else {
            return Ok(());
        };
        if named {
            return Ok(());
        }
        launch::delete(&args(), &id)
    })
}

/// Called by slurmd when the job ends on this node: removes the job's named
/// containers and anything a killed slurmstepd left behind.
///
/// # Safety
/// Called by Slurm with its own handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_job_epilog(
    sp: spank_t,
    argc: libc::c_int,
    argv: *mut *mut libc::c_char,
) -> libc::c_int {
    let args = unsafe { plugstack_args(argc, argv) };
    let sp = Spank(sp);
    guard(
        "job cleanup",
        || -> Result<(), Box<dyn std::error::Error>> {
            // With a broken plugstack.conf no container was made (every step
            // failed): nothing to clean, and no reason to drain the node.
            let Ok(parsed) = PluginArgs::parse(args.iter().map(String::as_str)) else {
                return Ok(());
            };
            launch::delete_job(&parsed, sp.job_id()?)?;
            Ok(())
        },
    )
}
