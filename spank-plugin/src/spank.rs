//! Safe wrappers over the SPANK calls the plugin uses: job facts and the job's
//! environment. Every call checks Slurm's return code.

use std::ffi::{CStr, CString};

use slurm_headers::{
    spank_err_t, spank_get_item, spank_getenv, spank_item_t, spank_setenv, spank_t, spank_unsetenv,
};

/// Errors from SPANK calls.
#[derive(Debug, thiserror::Error)]
pub enum SpankError {
    /// Slurm refused a request.
    #[error("slurm refused {what} (spank error {code})")]
    Refused { what: String, code: i32 },
    /// A name or value held a NUL byte.
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
}

/// A SPANK handle, valid for the duration of one callback.
#[derive(Clone, Copy)]
pub struct Spank(pub spank_t);

fn check(rc: spank_err_t, what: impl FnOnce() -> String) -> Result<(), SpankError> {
    let code = rc.0 as i32;
    if code == 0 {
        Ok(())
    } else {
        Err(SpankError::Refused { what: what(), code })
    }
}

fn cstring(s: &str) -> Result<CString, SpankError> {
    CString::new(s).map_err(|_| SpankError::Nul(s.into()))
}

/// Slurm's step id of a batch script step (`SLURM_BATCH_SCRIPT` in slurm.h).
pub const BATCH_STEP: u32 = 0xffff_fffb;
/// The job's extern step (`SLURM_EXTERN_CONT`).
pub const EXTERN_STEP: u32 = 0xffff_fffc;
/// An salloc's interactive step (`SLURM_INTERACTIVE_STEP`).
pub const INTERACTIVE_STEP: u32 = 0xffff_fffa;

/// A step id as `sacct` writes it: the number, or the name of Slurm's special
/// steps (`batch`, `extern`, `interactive`).
pub fn step_name(step_id: u32) -> String {
    match step_id {
        BATCH_STEP => "batch".into(),
        EXTERN_STEP => "extern".into(),
        INTERACTIVE_STEP => "interactive".into(),
        n => n.to_string(),
    }
}

/// The job and step a slurmstepd serves, and whose user it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobInfo {
    /// Job id.
    pub job_id: u32,
    /// Step id (batch and extern steps use Slurm's special values).
    pub step_id: u32,
    /// The job user's uid.
    pub uid: u32,
    /// The job user's primary gid.
    pub gid: u32,
}

impl Spank {
    fn u32_item(&self, item: spank_item_t) -> Result<u32, SpankError> {
        let mut v: u32 = 0;
        // SAFETY: these items take one `uint32_t *` (uid_t/gid_t are u32 on Linux).
        let rc = unsafe { spank_get_item(self.0, item, &mut v as *mut u32) };
        check(rc, || format!("item {item:?}"))?;
        Ok(v)
    }

    /// This task's index among the node's tasks (task callbacks only).
    pub fn local_task_id(&self) -> Result<u32, SpankError> {
        self.u32_item(spank_item_t::S_TASK_ID)
    }

    /// The job id (also available in the job prolog and epilog).
    pub fn job_id(&self) -> Result<u32, SpankError> {
        self.u32_item(spank_item_t::S_JOB_ID)
    }

    /// This node's index in the step, the step's node count and the job's
    /// restart count (remote context only); `None` where Slurm refuses one.
    pub fn step_counts(&self) -> (Option<u32>, Option<u32>, Option<u32>) {
        (
            self.u32_item(spank_item_t::S_JOB_NODEID).ok(),
            self.u32_item(spank_item_t::S_JOB_NNODES).ok(),
            self.u32_item(spank_item_t::S_SLURM_RESTART_COUNT).ok(),
        )
    }

    /// The job, step and user of this slurmstepd (remote context only).
    pub fn job(&self) -> Result<JobInfo, SpankError> {
        Ok(JobInfo {
            job_id: self.u32_item(spank_item_t::S_JOB_ID)?,
            step_id: self.u32_item(spank_item_t::S_JOB_STEPID)?,
            uid: self.u32_item(spank_item_t::S_JOB_UID)?,
            gid: self.u32_item(spank_item_t::S_JOB_GID)?,
        })
    }

    /// The step's command line (`S_JOB_ARGV`); for a batch step, the script path.
    pub fn argv(&self) -> Result<Vec<String>, SpankError> {
        let mut argc: libc::c_int = 0;
        let mut argv: *mut *mut libc::c_char = std::ptr::null_mut();
        // SAFETY: S_JOB_ARGV takes (int *, char ***); Slurm owns the strings.
        let rc = unsafe { spank_get_item(self.0, spank_item_t::S_JOB_ARGV, &mut argc, &mut argv) };
        check(rc, || "the step's command line".into())?;
        if argv.is_null() {
            return Ok(vec![]);
        }
        Ok((0..argc.max(0) as usize)
            // SAFETY: Slurm returned `argc` valid C strings.
            .map(|i| {
                unsafe { CStr::from_ptr(*argv.add(i)) }
                    .to_string_lossy()
                    .into_owned()
            })
            .collect())
    }

    /// The job's supplementary groups.
    pub fn supplementary_gids(&self) -> Result<Vec<u32>, SpankError> {
        let mut list: *mut libc::gid_t = std::ptr::null_mut();
        let mut count: libc::c_int = 0;
        // SAFETY: S_JOB_SUPPLEMENTARY_GIDS takes (gid_t **, int *); Slurm owns the array.
        let rc = unsafe {
            spank_get_item(
                self.0,
                spank_item_t::S_JOB_SUPPLEMENTARY_GIDS,
                &mut list,
                &mut count,
            )
        };
        check(rc, || "the job's supplementary groups".into())?;
        if list.is_null() {
            return Ok(vec![]);
        }
        // SAFETY: Slurm returned `count` gids at `list`.
        Ok(unsafe { std::slice::from_raw_parts(list, count.max(0) as usize) }.to_vec())
    }

    /// A variable of the job's environment, as the tasks will see it.
    pub fn getenv(&self, name: &str) -> Result<Option<String>, SpankError> {
        let c = cstring(name)?;
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is writable for its whole length; Slurm NUL-terminates.
        let rc = unsafe {
            spank_getenv(
                self.0,
                c.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len() as libc::c_int,
            )
        };
        if rc.0 != 0 {
            // ESPANK_ENV_NOEXIST and friends: the variable is not set.
            return Ok(None);
        }
        // SAFETY: on success the buffer holds a NUL-terminated string.
        Ok(Some(
            unsafe { CStr::from_ptr(buf.as_ptr().cast()) }
                .to_string_lossy()
                .into_owned(),
        ))
    }

    /// Sets a variable of the job's environment (overwriting).
    pub fn setenv(&self, name: &str, value: &str) -> Result<(), SpankError> {
        let (n, v) = (cstring(name)?, cstring(value)?);
        // SAFETY: valid C strings; overwrite = 1.
        check(
            unsafe { spank_setenv(self.0, n.as_ptr(), v.as_ptr(), 1) },
            || format!("setting {name}"),
        )
    }

    /// Removes a variable from the job's environment.
    pub fn unsetenv(&self, name: &str) -> Result<(), SpankError> {
        let n = cstring(name)?;
        // SAFETY: valid C string.
        check(unsafe { spank_unsetenv(self.0, n.as_ptr()) }, || {
            format!("unsetting {name}")
        })
    }
}
