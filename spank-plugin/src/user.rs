//! The job user's passwd entry and group names, looked up once per step in
//! slurmstepd (which has the site's NSS: files, SSSD, LDAP) and handed to
//! `berth slurm-create`, which does no passwd or group lookups itself.

use nix::unistd::{Gid, Group, Uid, User};

/// What the container's /etc/passwd and /etc/group need about the job user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobUser {
    /// Login name.
    pub name: Option<String>,
    /// Home directory.
    pub home: Option<String>,
    /// Login shell.
    pub shell: Option<String>,
    /// `(gid, name)` of the primary and supplementary groups that resolve.
    pub groups: Vec<(u32, String)>,
    /// The job's supplementary gids, named or not (slurmstepd's list).
    pub supplementary: Vec<u32>,
}

impl JobUser {
    /// Looks up `uid` and the groups `gid` + `groups`; whatever does not
    /// resolve (a uid without a passwd entry, a nameless gid) is left out.
    pub fn lookup(uid: u32, gid: u32, groups: &[u32]) -> Self {
        let user = User::from_uid(Uid::from_raw(uid)).ok().flatten();
        let mut gids = vec![gid];
        gids.extend(groups.iter().filter(|g| **g != gid));
        let names = gids
            .into_iter()
            .filter_map(|g| {
                let group = Group::from_gid(Gid::from_raw(g)).ok().flatten()?;
                Some((g, group.name))
            })
            .collect();
        let text = |p: &std::path::Path| p.to_str().map(str::to_string);
        JobUser {
            supplementary: groups.to_vec(),
            name: user.as_ref().map(|u| u.name.clone()),
            home: user.as_ref().and_then(|u| text(&u.dir)),
            shell: user.as_ref().and_then(|u| text(&u.shell)),
            groups: names,
        }
    }

    /// `slurm-create` arguments. Values that could break the container's
    /// passwd or group files (`:` or a newline) are left out: the runtime
    /// would refuse them.
    pub fn args(&self) -> Vec<String> {
        let ok = |s: &&String| !s.is_empty() && !s.contains([':', '\n']);
        let mut out = Vec::new();
        if !self.supplementary.is_empty() {
            let list: Vec<String> = self.supplementary.iter().map(u32::to_string).collect();
            out.extend(["--groups".to_string(), list.join(",")]);
        }
        for (flag, value) in [
            ("--user-name", &self.name),
            ("--home", &self.home),
            ("--shell", &self.shell),
        ] {
            if let Some(v) = value.as_ref().filter(ok) {
                out.extend([flag.to_string(), v.clone()]);
            }
        }
        for (gid, name) in &self.groups {
            if ok(&name) {
                out.extend(["--group-name".to_string(), format!("{gid}={name}")]);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_from_the_passwd_file() {
        let u = JobUser::lookup(0, 0, &[0]);
        assert_eq!(u.name.as_deref(), Some("root"));
        assert_eq!(u.home.as_deref(), Some("/root"));
        // The primary gid is listed once even when repeated as supplementary.
        assert_eq!(u.groups, vec![(0, "root".to_string())]);
    }

    #[test]
    fn unknown_ids_are_left_out() {
        let u = JobUser::lookup(3_999_999_999, 3_999_999_999, &[]);
        assert_eq!(u, JobUser::default());
        assert_eq!(JobUser::lookup(3_999_999_999, 0, &[]).name, None);
        assert!(u.args().is_empty());
    }

    #[test]
    fn args_skip_values_that_would_break_the_files() {
        let u = JobUser {
            name: Some("ann".into()),
            home: Some("/home/a:b".into()),
            shell: Some("/bin/bash".into()),
            groups: vec![(10, "wheel".into()), (11, "bad\nline".into())],
            supplementary: vec![10, 11, 12],
        };
        assert_eq!(
            u.args().join(" "),
            "--groups 10,11,12 --user-name ann --shell /bin/bash --group-name 10=wheel"
        );
    }
}
