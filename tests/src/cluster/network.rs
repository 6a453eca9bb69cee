//! Node 2's network: a named network namespace (`ip netns`) joined to this host
//! by a veth pair on a private /24, and node 2's name in this host's
//! `/etc/hosts`, as a cluster's name service would give it.
//!
//! A cluster owns the namespace it created: it records that in its run
//! directory, and only then tears it down or counts its processes as its own, so
//! a cluster in another directory can never kill this one's node 2.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{ClusterError, SecondNode};
use crate::proc;

/// The host's name service file that node 2's name is added to.
const ETC_HOSTS: &str = "/etc/hosts";

/// Node 2's network, owned by the cluster whose run directory is `run_dir`.
pub struct Network<'a> {
    /// Node 2.
    pub node: &'a SecondNode,
    /// The owning cluster's run directory.
    pub run_dir: PathBuf,
}

impl Network<'_> {
    fn owner_file(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    fn owned(&self) -> bool {
        fs::read_to_string(self.owner_file()).is_ok_and(|n| n.trim() == self.node.netns)
    }

    fn hosts_marker(&self) -> String {
        format!("# berth-dev node 2 of {}", self.run_dir.display())
    }

    fn veth_exists(&self) -> bool {
        Path::new("/sys/class/net")
            .join(&self.node.host_veth)
            .exists()
    }

    /// Runs `ip ARGS`; a failure becomes one line naming the command and ip's error.
    fn ip(&self, args: &[&str]) -> Result<(), ClusterError> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| self.error(args, &format!("{e}: install iproute2")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(self.error(args, String::from_utf8_lossy(&out.stderr).trim()))
    }

    fn error(&self, args: &[&str], detail: &str) -> ClusterError {
        ClusterError::Network {
            node: self.node.name.clone(),
            step: format!("ip {}", args.join(" ")),
            detail: detail.to_string(),
        }
    }

    /// Creates the namespace and the veth pair, addresses both ends, brings them
    /// (and node 2's loopback) up and names node 2 in `/etc/hosts`. Expects
    /// [`Network::teardown`] to have cleared what a crashed run left.
    pub fn setup(&self) -> Result<(), ClusterError> {
        let node = self.node;
        let ns = node.netns.as_str();
        if node.netns_path().exists() {
            return Err(ClusterError::NetnsTaken {
                netns: ns.into(),
                owner: self.owner_file(),
            });
        }
        self.ip(&["netns", "add", ns])?;
        super::write(&self.owner_file(), &format!("{ns}\n"), 0o644)?;
        let host = format!("{}/24", node.host_addr);
        let addr = format!("{}/24", node.node_addr);
        let veth = node.host_veth.as_str();
        self.ip(&[
            "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        self.ip(&["addr", "add", &host, "dev", veth])?;
        self.ip(&["link", "set", veth, "up"])?;
        self.ip(&["-n", ns, "addr", "add", &addr, "dev", "eth0"])?;
        self.ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        self.ip(&["-n", ns, "link", "set", "lo", "up"])?;
        self.publish_name()
    }

    /// Names node 2 in this host's `/etc/hosts` (again: a reused cluster repairs
    /// a line that someone removed).
    pub fn publish_name(&self) -> Result<(), ClusterError> {
        let line = format!("{} {}", self.node.node_addr, self.node.name);
        self.edit_hosts(Some(&line))
    }

    /// Live processes on node 2: everything in its network namespace, when this
    /// cluster owns it.
    pub fn processes(&self) -> Vec<i32> {
        if self.owned() {
            proc::in_namespace(&self.node.netns_path(), "net")
        } else {
            vec![]
        }
    }

    /// Ends every process on node 2, deletes the namespace, the veth pair and the
    /// `/etc/hosts` line. Works on what a crashed run left; a no-op when this
    /// cluster owns no namespace.
    pub fn teardown(&self) -> Result<(), ClusterError> {
        if !self.owned() {
            return Ok(());
        }
        for pid in self.processes() {
            proc::terminate(pid, Duration::from_secs(5));
        }
        if self.node.netns_path().exists() {
            self.ip(&["netns", "delete", &self.node.netns])?;
        }
        // Deleting the namespace destroys the pair asynchronously; a pair whose
        // namespace is gone already is deleted here.
        if self.veth_exists() {
            let _ = self.ip(&["link", "delete", &self.node.host_veth]);
        }
        if !proc::wait_until(Duration::from_secs(10), || !self.veth_exists()) {
            return Err(self.error(
                &["link", "delete", &self.node.host_veth],
                "the interface is still there",
            ));
        }
        self.edit_hosts(None)?;
        fs::remove_file(self.owner_file()).map_err(|source| ClusterError::Io {
            path: self.owner_file(),
            source,
        })
    }

    /// Replaces this cluster's line in `/etc/hosts` with `line`, or drops it.
    fn edit_hosts(&self, line: Option<&str>) -> Result<(), ClusterError> {
        let path = Path::new(ETC_HOSTS);
        let io = |source| ClusterError::Io {
            path: path.into(),
            source,
        };
        // Parallel test processes may start and stop clusters at once: they
        // serialise on a lock of the file itself.
        let _held = crate::lock::exclusive(path).map_err(io)?;
        let old = fs::read_to_string(path).map_err(io)?;
        let new = hosts_with(&old, &self.hosts_marker(), line);
        if new != old {
            // In place: /etc/hosts is often a bind mount, which a rename would break.
            fs::write(path, new).map_err(io)?;
        }
        Ok(())
    }
}

/// `hosts` without the lines ending in `marker`, plus `line` tagged with it.
fn hosts_with(hosts: &str, marker: &str, line: Option<&str>) -> String {
    let mut out: String = hosts
        .lines()
        .filter(|l| !l.ends_with(marker))
        .flat_map(|l| [l, "\n"])
        .collect();
    if let Some(line) = line {
        out.push_str(&format!("{line} {marker}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::hosts_with;

    #[test]
    fn hosts_line_is_replaced_and_removed() {
        let base = "127.0.0.1 localhost\n";
        let added = hosts_with(base, "# m", Some("10.0.0.2 n2"));
        assert_eq!(added, "127.0.0.1 localhost\n10.0.0.2 n2 # m\n");
        assert_eq!(
            hosts_with(&added, "# m", Some("10.0.0.3 n2")),
            "127.0.0.1 localhost\n10.0.0.3 n2 # m\n"
        );
        assert_eq!(hosts_with(&added, "# m", None), base);
        // Other clusters' lines stay.
        assert_eq!(hosts_with(&added, "# other", None), added);
    }
}
