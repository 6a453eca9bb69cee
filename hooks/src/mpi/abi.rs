//! The ABI rule between a host MPI library and the image's: versions come
//! from the real file names (`libmpich.so.12.2.2` after resolving symlinks),
//! as in Sarus, since the soname carries only the major.

use std::path::Path;

/// A library's version from its file name: `libX.so.MAJOR[.MINOR[.PATCH]]`
/// (missing parts count as 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibVersion {
    /// Incompatible ABI changes.
    pub major: u32,
    /// Additions: a newer minor provides everything an older one does.
    pub minor: u32,
    /// Fixes only.
    pub patch: u32,
}

impl std::fmt::Display for LibVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl LibVersion {
    /// The version in `path`'s file name, `None` without one.
    pub fn of(path: &Path) -> Option<Self> {
        let name = path.file_name()?.to_str()?;
        let (_, version) = name.split_once(".so.")?;
        let mut parts = version.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(LibVersion {
            major,
            minor,
            patch,
        })
    }
}

/// How strictly the host library must match the image's
/// (`MPI_COMPATIBILITY_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compat {
    /// Same major.
    #[default]
    Major,
    /// Same major, and the host's minor at least the image's (the image may
    /// use functions added up to its minor).
    Full,
    /// Same major and minor.
    Strict,
}

impl std::str::FromStr for Compat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "major" => Ok(Compat::Major),
            "full" => Ok(Compat::Full),
            "strict" => Ok(Compat::Strict),
            other => Err(format!(
                "MPI_COMPATIBILITY_TYPE={other} is not one of major, full, strict"
            )),
        }
    }
}

impl std::fmt::Display for Compat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compat::Major => "major",
            Compat::Full => "full",
            Compat::Strict => "strict",
        })
    }
}

impl Compat {
    /// Why `host` cannot replace `image` under this rule, or `None` when it can.
    pub fn violation(self, host: LibVersion, image: LibVersion) -> Option<&'static str> {
        if host.major != image.major {
            return Some("the major versions differ");
        }
        match self {
            Compat::Full if host.minor < image.minor => {
                Some("the host's minor version is older than the image's")
            }
            Compat::Strict if host.minor != image.minor => Some("the minor versions differ"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> LibVersion {
        LibVersion::of(Path::new(s)).unwrap()
    }

    #[test]
    fn versions_from_file_names() {
        assert_eq!(
            v("/usr/lib/libmpich.so.12.2.2"),
            LibVersion {
                major: 12,
                minor: 2,
                patch: 2
            }
        );
        assert_eq!(v("libmpi.so.40").to_string(), "40.0.0");
        assert_eq!(v("libmpi.so.40.30").to_string(), "40.30.0");
        assert_eq!(LibVersion::of(Path::new("libmpi.so")), None);
        assert_eq!(LibVersion::of(Path::new("libmpi.so.x")), None);
        assert_eq!(LibVersion::of(Path::new("libmpi-4.1.so")), None);
    }

    #[test]
    fn rules_as_documented() {
        let host = v("libmpich.so.12.2.2");
        for (image, major, full, strict) in [
            ("libmpich.so.12.2.2", true, true, true),
            ("libmpich.so.12.1.0", true, true, false),
            ("libmpich.so.12.3.0", true, false, false),
            ("libmpich.so.11.2.2", false, false, false),
        ] {
            let image = v(image);
            assert_eq!(Compat::Major.violation(host, image).is_none(), major);
            assert_eq!(Compat::Full.violation(host, image).is_none(), full);
            assert_eq!(Compat::Strict.violation(host, image).is_none(), strict);
        }
        assert_eq!("full".parse::<Compat>(), Ok(Compat::Full));
        assert!("loose"
            .parse::<Compat>()
            .unwrap_err()
            .contains("major, full, strict"));
        assert_eq!(Compat::default().to_string(), "major");
    }
}
