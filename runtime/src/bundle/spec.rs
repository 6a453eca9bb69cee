//! `config.json` for an image: process from the image config (Entrypoint,
//! Cmd, Env, WorkingDir, User) and the user's options, environment rules and
//! mounts from the site config, user mounts checked against the site policy,
//! and the site's hooks.d hooks whose conditions match.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceType, LinuxNamespaceType, MountBuilder, Spec,
};

use super::BundleError;
use crate::image::manifest::RunConfig;
use crate::site::SiteConfig;

/// What the user asked for on the command line.
#[derive(Debug, Default, Clone)]
pub struct UserOptions {
    /// `SRC:DST[:ro]` mounts.
    pub mounts: Vec<String>,
    /// `K=V` variables.
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Entrypoint override ("" clears).
    pub entrypoint: Option<String>,
    /// Command override.
    pub command: Vec<String>,
    /// Root is a writable overlay.
    pub writable: bool,
    /// Annotations (hooks select on them).
    pub annotations: Vec<(String, String)>,
}

fn invalid(s: String) -> BundleError {
    BundleError::Invalid(s)
}

/// The process arguments: entrypoint + (user command or image Cmd).
pub fn args(img: &RunConfig, o: &UserOptions) -> Result<Vec<String>, BundleError> {
    let mut args: Vec<String> = match &o.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => img.entrypoint.clone().unwrap_or_default(),
    };
    if o.command.is_empty() {
        // Docker semantics: a new entrypoint drops the image's Cmd.
        if o.entrypoint.is_none() {
            args.extend(img.cmd.clone().unwrap_or_default());
        }
    } else {
        args.extend(o.command.iter().cloned());
    }
    if args.is_empty() {
        return Err(invalid(
            "the image has no Entrypoint or Cmd: give a command after the image".into(),
        ));
    }
    Ok(args)
}

/// Image environment, then site rules, then the user's `--env` (which win).
pub fn environment(
    img: &RunConfig,
    site: &SiteConfig,
    user: &[String],
) -> Result<Vec<String>, BundleError> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: &str, v: String| match env
        .iter_mut()
        .find(|(ek, _)| ek == k)
    {
        Some(e) => e.1 = v,
        None => env.push((k.to_string(), v)),
    };
    for kv in img.env.iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut env, k, v.to_string());
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        set(
            &mut env,
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let rules = &site.environment;
    for (k, v) in &rules.set {
        set(&mut env, k, v.clone());
    }
    for (k, v) in &rules.prepend {
        let cur = env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        set(
            &mut env,
            k,
            cur.filter(|c| !c.is_empty())
                .map_or(v.clone(), |c| format!("{v}:{c}")),
        );
    }
    for (k, v) in &rules.append {
        let cur = env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
        set(
            &mut env,
            k,
            cur.filter(|c| !c.is_empty())
                .map_or(v.clone(), |c| format!("{c}:{v}")),
        );
    }
    env.retain(|(k, _)| !rules.unset.contains(k));
    for kv in user {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| invalid(format!("--env {kv:?}: expected KEY=VALUE")))?;
        if k.is_empty() {
            return Err(invalid(format!("--env {kv:?}: empty variable name")));
        }
        set(&mut env, k, v.to_string());
    }
    Ok(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

/// Parses and polices one `--mount SRC:DST[:ro]`.
pub fn user_mount(site: &SiteConfig, m: &str) -> Result<(PathBuf, PathBuf, bool), BundleError> {
    let bad = |why: &str| invalid(format!("--mount {m:?}: {why}"));
    let parts: Vec<&str> = m.split(':').collect();
    let (src, dst, ro) = match parts[..] {
        [s, d] => (s, d, false),
        [s, d, "ro"] => (s, d, true),
        [s, d, "rw"] => (s, d, false),
        _ => return Err(bad("expected SRC:DST[:ro]")),
    };
    let (src, dst) = (PathBuf::from(src), PathBuf::from(dst));
    if !src.is_absolute()
        || !dst.is_absolute()
        || dst
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(bad("SRC and DST must be absolute paths without `..`"));
    }
    let policy = &site.user_mounts;
    if !policy.enabled {
        return Err(bad(
            "the site does not allow user mounts (user_mounts.enabled = false)",
        ));
    }
    if dst == Path::new("/")
        || policy
            .disallowed_destinations
            .iter()
            .any(|p| dst.starts_with(p))
    {
        return Err(bad("the site does not allow mounts on this destination (user_mounts.disallowed_destinations)"));
    }
    if !src.exists() {
        return Err(bad("the source does not exist"));
    }
    Ok((src, dst, ro))
}

fn bind(src: &Path, dst: &Path, ro: bool) -> Result<oci_spec::runtime::Mount, BundleError> {
    let mut opts = vec!["rbind".to_string(), "nosuid".into(), "nodev".into()];
    if ro {
        opts.push("ro".into());
    }
    MountBuilder::default()
        .destination(dst)
        .typ("bind")
        .source(src)
        .options(opts)
        .build()
        .map_err(|e| invalid(format!("mount {}: {e}", dst.display())))
}

/// Sets the process's uid and gid (known only once the image is mounted, from
/// its /etc/passwd).
pub fn set_user(spec: &mut Spec, (uid, gid): (u32, u32)) {
    let mut process = spec.process().clone().unwrap_or_default();
    let mut user = process.user().clone();
    user.set_uid(uid);
    user.set_gid(gid);
    process.set_user(user);
    spec.set_process(Some(process));
}

/// Adapts a spec to an unprivileged caller: a user namespace that maps the
/// caller's own uid and gid to themselves (the job runs as the same user, not
/// as a fake root), the host's /sys bound read-only (a sysfs mount needs a
/// network namespace of its own) and devpts without the unmappable tty group.
pub fn make_rootless(spec: &mut Spec, uid: u32, gid: u32) -> Result<(), BundleError> {
    use oci_spec::runtime::{LinuxIdMappingBuilder, LinuxNamespaceBuilder};
    let map = |id: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(id)
            .host_id(id)
            .size(1u32)
            .build()
            .map_err(|e| invalid(format!("id mapping: {e}")))
    };
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut ns = linux.namespaces().clone().unwrap_or_default();
    ns.push(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .build()
            .map_err(|e| invalid(format!("user namespace: {e}")))?,
    );
    linux.set_namespaces(Some(ns));
    linux.set_uid_mappings(Some(vec![map(uid)?]));
    linux.set_gid_mappings(Some(vec![map(gid)?]));
    spec.set_linux(Some(linux));
    let mounts = spec.mounts().clone().unwrap_or_default();
    // A new mqueue mount needs an IPC namespace of our own (we share the
    // host's): bind the host's /dev/mqueue when it has one, else go without.
    let host_mqueue = Path::new("/dev/mqueue").is_dir();
    let mounts = mounts
        .into_iter()
        .filter(|m| host_mqueue || m.destination() != Path::new("/dev/mqueue"))
        .map(|m| match m.destination().to_str() {
            Some("/sys") => bind(Path::new("/sys"), Path::new("/sys"), true),
            Some("/dev/mqueue") => bind(Path::new("/dev/mqueue"), Path::new("/dev/mqueue"), false),
            Some("/dev/pts") => {
                let mut m = m;
                let opts = m.options().clone().unwrap_or_default();
                m.set_options(Some(
                    opts.into_iter()
                        .filter(|o| !o.starts_with("gid="))
                        .collect(),
                ));
                Ok(m)
            }
            _ => Ok(m),
        })
        .collect::<Result<Vec<_>, _>>()?;
    spec.set_mounts(Some(mounts));
    set_user(spec, (uid, gid));
    // The user keeps no capability, not even inside their own namespace.
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_capabilities(Some(crate::caps::none()));
    process.set_no_new_privileges(Some(true));
    spec.set_process(Some(process));
    Ok(())
}

/// Host files every container sees in place of the image's.
const HOST_FILES: &[&str] = &["/etc/hosts", "/etc/resolv.conf"];

/// A read-only root cannot take new mount points: drops the host resolver
/// files the image has no file for (inside `rootfs`, resolved in the root).
pub fn drop_missing_host_files(spec: &mut Spec, rootfs: &Path) {
    let Ok(root) = std::fs::File::open(rootfs) else {
        return;
    };
    let missing = |dst: &Path| {
        HOST_FILES.iter().any(|f| Path::new(f) == dst)
            && crate::resolve::open_in_root(std::os::fd::AsFd::as_fd(&root), dst).is_err()
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    spec.set_mounts(Some(
        mounts
            .into_iter()
            .filter(|m| !missing(m.destination()))
            .collect(),
    ));
}

/// Builds the spec for `rootfs` (a path relative to the bundle).
pub fn build(
    img: &RunConfig,
    site: &SiteConfig,
    o: &UserOptions,
    uid_gid: (u32, u32),
) -> Result<Spec, BundleError> {
    let mut spec = Spec::default();
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args(img, o)?));
    process.set_env(Some(environment(img, site, &o.env)?));
    process.set_cwd(PathBuf::from(
        o.workdir
            .clone()
            .or_else(|| img.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".into()),
    ));
    process.set_terminal(Some(false));
    spec.set_process(Some(process));
    set_user(&mut spec, uid_gid);
    // No UTS namespace (hosts keep their name for MPI and logs), so no hostname.
    spec.set_hostname(None);
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(!o.writable));
    spec.set_root(Some(root));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    // Where the host's resolver files go (added after hooks.d selection).
    let host_files_at = mounts.len();
    for m in &site.mounts {
        mounts.push(bind(&m.source, &m.destination, m.readonly)?);
    }
    for m in &o.mounts {
        let (s, d, ro) = user_mount(site, m)?;
        mounts.push(bind(&s, &d, ro)?);
    }
    spec.set_mounts(Some(mounts));
    let mut linux = spec.linux().clone().unwrap_or_default();
    // HPC: host network (interconnects, MPI), host IPC for shared-memory transports.
    let ns: Vec<_> = linux
        .namespaces()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|n| matches!(n.typ(), LinuxNamespaceType::Mount | LinuxNamespaceType::Pid))
        .collect();
    linux.set_namespaces(Some(ns));
    let mut devices = linux.devices().clone().unwrap_or_default();
    for d in &site.devices {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let md = std::fs::metadata(&d.path)
            .map_err(|e| invalid(format!("site device {}: {e}", d.path.display())))?;
        let typ = if md.file_type().is_block_device() {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        let rdev = md.rdev();
        devices.push(
            LinuxDeviceBuilder::default()
                .path(&d.path)
                .typ(typ)
                .major(libc::major(rdev) as i64)
                .minor(libc::minor(rdev) as i64)
                .file_mode(md.mode() & 0o777)
                .build()
                .map_err(|e| invalid(format!("site device {}: {e}", d.path.display())))?,
        );
    }
    linux.set_devices(Some(devices));
    spec.set_linux(Some(linux));
    if !o.annotations.is_empty() {
        spec.set_annotations(Some(o.annotations.iter().cloned().collect()));
    }
    // hooks.d conditions look at the annotations, args and mounts above.
    crate::hooks_d::apply(&crate::hooks_d::site_hooks(site)?, &mut spec);
    // The container shares the host's network, so it resolves names as the
    // host does (node names for MPI and SSH): the host's resolver files,
    // read-only, before site and user mounts so those can still replace them.
    // Added after selection: they are berth's own, not the binds
    // `hasBindMounts` asks about, which every container would otherwise have.
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let host: Vec<_> = HOST_FILES
        .iter()
        .map(Path::new)
        .filter(|f| f.is_file())
        .map(|f| bind(f, f, true))
        .collect::<Result<_, _>>()?;
    mounts.splice(host_files_at..host_files_at, host);
    spec.set_mounts(Some(mounts));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["default".into()]),
            env: Some(vec!["PATH=/img/bin".into(), "A=1".into(), "DROP=x".into()]),
            working_dir: Some("/work".into()),
            user: None,
        }
    }

    #[test]
    fn command_line_entrypoint_and_cmd_follow_docker_rules() {
        let o = UserOptions::default();
        assert_eq!(args(&img(), &o).unwrap(), ["/entry", "default"]);
        let o = UserOptions {
            command: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(args(&img(), &o).unwrap(), ["/entry", "x"]);
        let o = UserOptions {
            entrypoint: Some(String::new()),
            command: vec!["/bin/true".into()],
            ..Default::default()
        };
        assert_eq!(args(&img(), &o).unwrap(), ["/bin/true"]);
        assert!(args(&RunConfig::default(), &UserOptions::default()).is_err());
    }

    #[test]
    fn environment_applies_site_rules_then_user_values() {
        let mut site = SiteConfig::default();
        site.environment
            .prepend
            .insert("PATH".into(), "/site/bin".into());
        site.environment.append.insert("NEW".into(), "v".into());
        site.environment.set.insert("A".into(), "2".into());
        site.environment.unset.push("DROP".into());
        let env = environment(&img(), &site, &["A=3".into()]).unwrap();
        assert_eq!(env, ["PATH=/site/bin:/img/bin", "A=3", "NEW=v"]);
    }

    /// The resolver files are bound, before the site's and user's mounts,
    /// yet a `hasBindMounts` hook is selected only by those.
    #[test]
    fn host_files_are_bound_but_do_not_count_as_bind_mounts() {
        let hooks = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            hooks.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        std::fs::write(
            hooks.path().join("10-binds.json"),
            r#"{"version":"1.0.0","hook":{"path":"/bin/sh"},"when":{"hasBindMounts":true},"stages":["createRuntime"]}"#,
        )
        .unwrap();
        let site = SiteConfig {
            hooks_dir: Some(hooks.path().to_path_buf()),
            ..SiteConfig::default()
        };
        let dsts = |s: &Spec| -> Vec<String> {
            s.mounts()
                .iter()
                .flatten()
                .map(|m| m.destination().display().to_string())
                .collect()
        };
        let plain = build(&img(), &site, &UserOptions::default(), (0, 0)).unwrap();
        assert!(plain.hooks().is_none(), "no bind asked for: no hook");
        let files: Vec<&str> = HOST_FILES
            .iter()
            .copied()
            .filter(|f| Path::new(f).is_file())
            .collect();
        assert!(files.iter().all(|f| dsts(&plain).iter().any(|d| d == f)));
        let o = UserOptions {
            mounts: vec!["/tmp:/data".into()],
            ..UserOptions::default()
        };
        let with_bind = build(&img(), &site, &o, (0, 0)).unwrap();
        assert!(with_bind.hooks().is_some(), "a user bind selects the hook");
        let d = dsts(&with_bind);
        let data = d.iter().position(|x| x == "/data").unwrap();
        for f in files {
            assert!(d.iter().position(|x| x == f).unwrap() < data, "{d:?}");
        }
    }

    #[test]
    fn user_mounts_obey_the_policy() {
        let site = SiteConfig::default();
        assert!(user_mount(&site, "/tmp:/data:ro").unwrap().2);
        for bad in [
            "/tmp:/etc/x",
            "rel:/data",
            "/tmp:/data/../etc",
            "/tmp",
            "/tmp:/",
        ] {
            assert!(user_mount(&site, bad).is_err(), "{bad} must be refused");
        }
    }
}
