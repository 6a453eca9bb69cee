//! Capabilities: the bounding set is dropped while we are still root (it
//! needs CAP_SETPCAP), the other sets are written with one capset(2) after
//! the uid switch, then ambient capabilities are raised one by one.

use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

/// Errors applying capabilities.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
}

/// Every set empty: what an unprivileged process keeps. (oci-spec's
/// `Default` holds runc's three capabilities, so it is not this.)
pub fn none() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(Capabilities::new()));
    c.set_effective(Some(Capabilities::new()));
    c.set_inheritable(Some(Capabilities::new()));
    c.set_permitted(Some(Capabilities::new()));
    c.set_ambient(Some(Capabilities::new()));
    c
}

fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Kernel capability number of an OCI capability, or None when this
/// kernel (or the caps crate) does not know it.
fn index(c: &oci_spec::runtime::Capability, last: u8) -> Option<u8> {
    let i = caps::Capability::from_str(&format!("CAP_{c}"))
        .ok()?
        .index();
    (i <= last).then_some(i)
}

fn mask(set: &Option<Capabilities>, last: u8) -> u64 {
    set.iter()
        .flatten()
        .filter_map(|c| index(c, last))
        .fold(0u64, |m, i| m | (1u64 << i))
}

fn err(what: impl Into<String>) -> CapsError {
    CapsError::Sys {
        what: what.into(),
        source: std::io::Error::last_os_error(),
    }
}

/// Drop everything outside the bounding set.
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap();
    let keep = mask(c.bounding(), last);
    for i in 0..=last {
        if keep & (1 << i) == 0 {
            // SAFETY: prctl with integer arguments.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong, 0, 0, 0) } != 0 {
                return Err(err(format!("drop capability {i} from the bounding set")));
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct Header {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Set effective, permitted, inheritable and ambient sets.
pub fn apply(c: &LinuxCapabilities) -> Result<(), CapsError> {
    let last = last_cap();
    let (e, p, i) = (
        mask(c.effective(), last),
        mask(c.permitted(), last),
        mask(c.inheritable(), last),
    );
    let hdr = Header {
        version: 0x20080522,
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: header and a two-element data array, as capset v3 expects.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } != 0 {
        return Err(err("capset"));
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let amb = mask(c.ambient(), last);
    let mut skipped = Vec::new();
    for n in 0..=last {
        if amb & (1 << n) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    n as libc::c_ulong,
                    0,
                    0,
                )
            };
            if r != 0 {
                skipped.push(n.to_string());
            }
        }
    }
    if !skipped.is_empty() {
        // runc's own default spec lists ambient capabilities that are not
        // inheritable; like runc, warn (once) instead of failing.
        crate::log::warn(&format!(
            "ambient capabilities {} not raised: an ambient capability must also be permitted and inheritable",
            skipped.join(",")
        ));
    }
    Ok(())
}
