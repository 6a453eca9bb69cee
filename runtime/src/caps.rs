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

/// The highest capability this kernel knows. Probed with PR_CAPBSET_READ
/// (EINVAL above it; capability numbers are contiguous) rather than read
/// from /proc/sys/kernel/cap_last_cap: the init asks after pivot_root, when
/// /proc is the container's own (a fresh procfs, slow to look into the
/// first time, and not mounted at all in some configs).
fn last_cap() -> u8 {
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        // SAFETY: prctl with integer arguments.
        let known =
            |n: u8| unsafe { libc::prctl(libc::PR_CAPBSET_READ, n as libc::c_ulong, 0, 0, 0) } >= 0;
        // The last n with known(n), in 0..64 (0, CAP_CHOWN, is always known).
        let (mut lo, mut hi) = (0u8, 64u8);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if known(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    })
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

#[cfg(test)]
mod tests {
    #[test]
    fn last_cap_is_what_the_kernel_says() {
        let file: u8 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(super::last_cap(), file);
    }
}
