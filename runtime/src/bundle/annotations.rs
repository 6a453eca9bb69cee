//! The annotations a bundle's spec carries for hooks.d selection, built the
//! same way for `berth run` and `berth slurm-create`: the image reference, the
//! feature flags (`com.berth.mpi`, `.mpi.type`, `.ssh`, `.gpus`), then the
//! caller's `--annotation KEY=VALUE` (which win over the flags). The table of
//! names is in docs/hooks.md.

use super::BundleError;

/// What the caller asked for.
#[derive(Debug, Default, Clone)]
pub struct Requested<'a> {
    /// The image reference as given.
    pub image: &'a str,
    /// MPI support requested (`--mpi`, `--container-mpi`).
    pub mpi: bool,
    /// The MPI type (`--container-mpi=TYPE`).
    pub mpi_type: Option<&'a str>,
    /// SSH requested.
    pub ssh: bool,
    /// Host GPU indices (`0,1`) or `all`.
    pub gpus: Option<&'a str>,
    /// `KEY=VALUE` strings from `--annotation`.
    pub extra: &'a [String],
}

/// Parses one `--annotation KEY=VALUE`.
pub fn parse(kv: &str) -> Result<(String, String), BundleError> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(BundleError::Invalid(format!(
            "--annotation {kv:?}: expected KEY=VALUE with a non-empty KEY"
        ))),
    }
}

/// Checks a `--gpus` value: `all` or a comma-separated list of indices.
pub fn check_gpus(list: &str) -> Result<(), BundleError> {
    let ok = list == "all"
        || (!list.is_empty()
            && list
                .split(',')
                .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit())));
    if ok {
        Ok(())
    } else {
        Err(BundleError::Invalid(format!(
            "--gpus {list:?}: expected `all` or GPU indices like 0,1"
        )))
    }
}

/// The annotations, in order; a later `--annotation` replaces an earlier value.
pub fn build(r: &Requested) -> Result<Vec<(String, String)>, BundleError> {
    let mut out: Vec<(String, String)> = vec![(
        "org.opencontainers.image.ref.name".into(),
        r.image.to_string(),
    )];
    if r.mpi {
        out.push(("com.berth.mpi".into(), "true".into()));
    }
    if let Some(t) = r.mpi_type {
        out.push(("com.berth.mpi.type".into(), t.to_string()));
    }
    if r.ssh {
        out.push(("com.berth.ssh".into(), "true".into()));
    }
    if let Some(g) = r.gpus {
        out.push(("com.berth.gpus".into(), g.to_string()));
    }
    for kv in r.extra {
        let (k, v) = parse(kv)?;
        match out.iter_mut().find(|(ok, _)| *ok == k) {
            Some(e) => e.1 = v,
            None => out.push((k, v)),
        }
    }
    // After the merge: the NVIDIA hook reads this one value however it came.
    if let Some((_, g)) = out.iter().find(|(k, _)| k == "com.berth.gpus") {
        check_gpus(g)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_then_user_annotations_which_win() {
        let extra = ["com.berth.ssh=false".to_string(), "site.x=a=b".into()];
        let a = build(&Requested {
            image: "reg/img:1",
            mpi: true,
            mpi_type: Some("pmi2"),
            ssh: true,
            gpus: Some("0,2"),
            extra: &extra,
        })
        .unwrap();
        let got: Vec<String> = a.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            got,
            [
                "org.opencontainers.image.ref.name=reg/img:1",
                "com.berth.mpi=true",
                "com.berth.mpi.type=pmi2",
                "com.berth.ssh=false",
                "com.berth.gpus=0,2",
                "site.x=a=b",
            ]
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let e = build(&Requested {
            extra: &["=v".to_string()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("--annotation \"=v\""), "{e}");
        assert!(parse("novalue").is_err());
        for bad in ["", "0,", "a", "0;1", "-1"] {
            assert!(check_gpus(bad).is_err(), "{bad:?}");
        }
        for good in ["all", "0", "0,1,7"] {
            check_gpus(good).unwrap();
        }
        // A raw --annotation of the GPU list is checked like --gpus.
        let e = build(&Requested {
            extra: &["com.berth.gpus=0;1".to_string()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("0;1"), "{e}");
    }
}
