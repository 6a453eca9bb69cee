//! process.rlimits: applied before the uid switch because raising a hard
//! limit needs CAP_SYS_RESOURCE.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Errors setting resource limits.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("setrlimit {name}: {source}")]
    Set {
        name: String,
        source: std::io::Error,
    },
}

// glibc types the resource as an unsigned int, musl as an int: the cast at
// the call site fits either.
fn resource(t: PosixRlimitType) -> libc::c_int {
    use PosixRlimitType::*;
    (match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::c_int
}

/// Apply every limit.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: r is a valid rlimit.
        if unsafe { libc::setrlimit(resource(l.typ()) as _, &r) } != 0 {
            return Err(RlimitError::Set {
                name: format!("{:?}", l.typ()),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}
