//! The NVIDIA driver's management library (NVML), loaded at run time so the
//! hook binary runs (and fails clearly) on nodes without a driver.
//!
//! Only the few calls the hook needs are bound; their C signatures are those
//! of `nvml.h` (every call returns an `nvmlReturn_t`, 0 on success).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use libloading::Library;

/// `NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE`.
const VERSION_LEN: usize = 80;
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`.
const UUID_LEN: usize = 96;

/// Errors talking to NVML.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    /// The library cannot be loaded.
    #[error("cannot load the NVIDIA management library {path}: {reason}; install the NVIDIA driver on this node or set NVML_LIBRARY in the hook's JSON env")]
    Load { path: String, reason: String },
    /// The library lacks a function (too old or not NVML).
    #[error("{path} has no {symbol}: the NVIDIA driver is too old or the file is not NVML")]
    Symbol { path: String, symbol: &'static str },
    /// A call returned an error.
    #[error("{call} failed: {message} (NVML error {code})")]
    Call {
        call: &'static str,
        code: c_int,
        message: String,
    },
    /// A string NVML returned is not UTF-8.
    #[error("{call} returned a string that is not UTF-8")]
    Text { call: &'static str },
}

/// One GPU as NVML reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// NVML index (the host's GPU numbering).
    pub index: u32,
    /// Minor number of its device node `/dev/nvidiaMINOR`.
    pub minor: u32,
    /// `GPU-...` UUID.
    pub uuid: String,
}

type Device = *mut c_void;

/// An initialised NVML; shut down on drop.
pub struct Nvml {
    path: String,
    lib: Library,
    /// nvmlInit_v2 succeeded, so drop must call nvmlShutdown.
    initialised: bool,
}

impl Nvml {
    /// Loads the library `path` (a file name goes through the dynamic
    /// loader's search) and initialises it.
    pub fn open(path: &str) -> Result<Self, NvmlError> {
        // SAFETY: loading NVML runs its constructors; it is the vendor's
        // library, named by the root-owned hook configuration.
        let lib = unsafe { Library::new(path) }.map_err(|e| NvmlError::Load {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let mut nvml = Nvml {
            path: path.to_string(),
            lib,
            initialised: false,
        };
        // SAFETY: nvmlInit_v2 takes no arguments.
        let init = unsafe { nvml.sym::<unsafe extern "C" fn() -> c_int>("nvmlInit_v2")? };
        // SAFETY: as declared in nvml.h.
        nvml.check("nvmlInit_v2", unsafe { init() })?;
        nvml.initialised = true;
        Ok(nvml)
    }

    /// # Safety
    /// `T` must be the symbol's true C type.
    unsafe fn sym<T: Copy>(&self, name: &'static str) -> Result<T, NvmlError> {
        // SAFETY: the caller states the type.
        unsafe { self.lib.get::<T>(name.as_bytes()) }
            .map(|s| *s)
            .map_err(|_| NvmlError::Symbol {
                path: self.path.clone(),
                symbol: name,
            })
    }

    /// The error of `call` returning `code`, worded by `nvmlErrorString`.
    fn error(&self, call: &'static str, code: c_int) -> NvmlError {
        // SAFETY: nvmlErrorString(nvmlReturn_t) returns a static string.
        let message =
            unsafe { self.sym::<unsafe extern "C" fn(c_int) -> *const c_char>("nvmlErrorString") }
                .ok()
                .map(|f| unsafe { f(code) })
                .filter(|p| !p.is_null())
                // SAFETY: NVML returns a NUL-terminated static string.
                .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
                .unwrap_or_else(|| "unknown error".into());
        NvmlError::Call {
            call,
            code,
            message,
        }
    }

    fn check(&self, call: &'static str, rc: c_int) -> Result<(), NvmlError> {
        if rc == 0 {
            Ok(())
        } else {
            Err(self.error(call, rc))
        }
    }

    /// The driver version (`535.104.05`), the suffix of its libraries' names.
    pub fn driver_version(&self) -> Result<String, NvmlError> {
        const CALL: &str = "nvmlSystemGetDriverVersion";
        // SAFETY: (char *version, unsigned int length) as in nvml.h.
        let f = unsafe {
            self.sym::<unsafe extern "C" fn(*mut c_char, c_uint) -> c_int>(
                "nvmlSystemGetDriverVersion",
            )?
        };
        let mut buf = [0 as c_char; VERSION_LEN];
        // SAFETY: buf holds VERSION_LEN bytes.
        self.check(CALL, unsafe { f(buf.as_mut_ptr(), VERSION_LEN as c_uint) })?;
        text(CALL, &buf)
    }

    /// How many GPUs the driver sees.
    pub fn count(&self) -> Result<u32, NvmlError> {
        // SAFETY: (unsigned int *count) as in nvml.h.
        let f = unsafe {
            self.sym::<unsafe extern "C" fn(*mut c_uint) -> c_int>("nvmlDeviceGetCount_v2")?
        };
        let mut n: c_uint = 0;
        // SAFETY: n is a valid out pointer.
        self.check("nvmlDeviceGetCount_v2", unsafe { f(&mut n) })?;
        Ok(n)
    }

    /// The GPU at NVML index `index`.
    pub fn gpu(&self, index: u32) -> Result<Gpu, NvmlError> {
        // SAFETY: the three signatures are those of nvml.h.
        let (by_index, minor_of, uuid_of) = unsafe {
            (
                self.sym::<unsafe extern "C" fn(c_uint, *mut Device) -> c_int>(
                    "nvmlDeviceGetHandleByIndex_v2",
                )?,
                self.sym::<unsafe extern "C" fn(Device, *mut c_uint) -> c_int>(
                    "nvmlDeviceGetMinorNumber",
                )?,
                self.sym::<unsafe extern "C" fn(Device, *mut c_char, c_uint) -> c_int>(
                    "nvmlDeviceGetUUID",
                )?,
            )
        };
        let mut dev: Device = std::ptr::null_mut();
        // SAFETY: dev is a valid out pointer; the handle stays NVML's.
        self.check("nvmlDeviceGetHandleByIndex_v2", unsafe {
            by_index(index, &mut dev)
        })?;
        let mut minor: c_uint = 0;
        // SAFETY: dev came from NVML; minor is a valid out pointer.
        self.check("nvmlDeviceGetMinorNumber", unsafe {
            minor_of(dev, &mut minor)
        })?;
        let mut buf = [0 as c_char; UUID_LEN];
        // SAFETY: buf holds UUID_LEN bytes.
        self.check("nvmlDeviceGetUUID", unsafe {
            uuid_of(dev, buf.as_mut_ptr(), UUID_LEN as c_uint)
        })?;
        Ok(Gpu {
            index,
            minor,
            uuid: text("nvmlDeviceGetUUID", &buf)?,
        })
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        if !self.initialised {
            return;
        }
        // SAFETY: nvmlShutdown takes no arguments; init succeeded.
        if let Ok(f) = unsafe { self.sym::<unsafe extern "C" fn() -> c_int>("nvmlShutdown") } {
            // SAFETY: as declared in nvml.h.
            unsafe { f() };
        }
    }
}

/// The NUL-terminated string NVML wrote into `buf`.
fn text(call: &'static str, buf: &[c_char]) -> Result<String, NvmlError> {
    // SAFETY: c_char and u8 have the same layout.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) };
    let s = CStr::from_bytes_until_nul(bytes).map_err(|_| NvmlError::Text { call })?;
    s.to_str()
        .map(str::to_string)
        .map_err(|_| NvmlError::Text { call })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_says_how_to_fix_it() {
        let err = Nvml::open("/nonexistent/libnvidia-ml.so.1")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/libnvidia-ml.so.1"), "{err}");
        assert!(err.contains("NVML_LIBRARY"), "{err}");
    }

    #[test]
    fn a_library_that_is_not_nvml_is_named() {
        // libc loads fine but has no NVML entry points.
        let err = Nvml::open("libc.so.6").err().unwrap().to_string();
        assert!(err.contains("has no nvmlInit_v2"), "{err}");
    }

    #[test]
    fn strings_stop_at_the_nul() {
        let buf: Vec<c_char> = b"535.1\0junk".iter().map(|b| *b as c_char).collect();
        assert_eq!(text("x", &buf).unwrap(), "535.1");
        let unterminated: Vec<c_char> = b"abc".iter().map(|b| *b as c_char).collect();
        assert!(text("x", &unterminated).is_err());
    }
}
