//! The cluster's second node: another slurmd on this host, in its own network,
//! mount and UTS namespaces, so that berth on it sees a different host (its own
//! `/run`, ports, loopback and hostname) while `/var/tmp`, `/home`, the store and
//! the Slurm directories stay shared, as a cluster's shared filesystem would be.
//!
//! The network namespace is a named one (see `network.rs`): slurmctld and
//! node 1 are reached at the host end of a veth pair, node 2 at the other. Its
//! mount and UTS namespaces belong to its slurmd, so they vanish with it; nothing
//! of them outlives teardown.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How node 2 is named and wired.
#[derive(Debug, Clone, PartialEq)]
pub struct SecondNode {
    /// Its Slurm node name, which is also its hostname.
    pub name: String,
    /// The named network namespace (`/run/netns/<netns>`).
    pub netns: String,
    /// The host end of the veth pair (at most 15 bytes); the node end is `eth0`.
    pub host_veth: String,
    /// This host's address on the pair: slurmctld's and node 1's address.
    pub host_addr: Ipv4Addr,
    /// Node 2's address.
    pub node_addr: Ipv4Addr,
    /// Ports of services on this host's loopback (the registries) that node 2
    /// reaches at its own 127.0.0.1 through a relay, as tests name them that way.
    pub forward_ports: Vec<u16>,
}

impl SecondNode {
    /// Node `<node1>-n2` in namespace `berth-n2` on 10.231.0.0/24.
    pub fn default_for(node1: &str) -> Self {
        SecondNode {
            name: format!("{node1}-n2"),
            netns: "berth-n2".into(),
            host_veth: "berth-n2-h".into(),
            host_addr: Ipv4Addr::new(10, 231, 0, 1),
            node_addr: Ipv4Addr::new(10, 231, 0, 2),
            forward_ports: vec![],
        }
    }

    /// The bind-mounted namespace file that `ip netns` keeps.
    pub fn netns_path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.netns)
    }

    /// The harness's name for node 2's slurmd (pid file and log in the run dir).
    pub fn daemon_name(&self) -> String {
        format!("slurmd-{}", self.name)
    }
}

/// The shell that turns a process in node 2's fresh mount and UTS namespaces
/// into node 2 before exec'ing its arguments: `$1` hostname, `$2` the hosts file
/// naming both nodes, `$3` the kit's root.
const ENTER: &str = r#"set -e
name=$1 hosts=$2 root=$3
shift 3
hostname "$name"
# Another host would not see this one's mounts under /run or the kit's root
# (image mounts): drop the copies this namespace got, deepest first.
awk '{print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
  case "$m" in /run|/run/*|"$root"|"$root"/*) umount -l "$m" ;; esac
done
mount -t tmpfs -o mode=0755,nosuid,nodev "$name-run" /run
mount --bind "$hosts" /etc/hosts
exec "$@""#;

/// Program and arguments that run `command` as node 2's daemon: in its network
/// namespace, in new mount and UTS namespaces set up by a small shell script (`ENTER`).
pub fn wrap(node: &SecondNode, hosts: &Path, root: &Path, command: &[String]) -> Vec<String> {
    let mut args = vec![
        format!("--net={}", node.netns_path().display()),
        "--".into(),
        "/usr/bin/unshare".into(),
        "--mount".into(),
        "--uts".into(),
        "--propagation".into(),
        "private".into(),
        "--".into(),
        "/bin/sh".into(),
        "-c".into(),
        ENTER.into(),
        "berth-node2".into(),
        node.name.clone(),
        hosts.display().to_string(),
        root.display().to_string(),
    ];
    args.extend(command.iter().cloned());
    args
}

/// `/etc/hosts` as node 2 sees it: both nodes at their pair addresses.
pub fn hosts_file(node1: &str, node: &SecondNode) -> String {
    format!(
        "127.0.0.1 localhost\n{} {node1}\n{} {}\n",
        node.host_addr, node.node_addr, node.name
    )
}

/// A command run as root on node 2: in all of its slurmd's namespaces.
pub fn command_in(slurmd: i32, program: &str) -> Command {
    let mut cmd = Command::new("/usr/bin/nsenter");
    cmd.arg(format!("--target={slurmd}"))
        .args(["--mount", "--uts", "--net", "--"])
        .arg(program);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_enters_the_namespace_then_runs_the_command() {
        let node = SecondNode::default_for("vm");
        let args = wrap(
            &node,
            Path::new("/c/hosts"),
            Path::new("/r"),
            &["/usr/sbin/slurmd".into(), "-D".into()],
        );
        assert_eq!(args[0], "--net=/run/netns/berth-n2");
        assert_eq!(
            &args[args.len() - 5..],
            ["vm-n2", "/c/hosts", "/r", "/usr/sbin/slurmd", "-D"]
        );
        assert!(
            node.host_veth.len() <= 15,
            "interface names are at most 15 bytes"
        );
    }

    #[test]
    fn hosts_file_names_both_nodes() {
        let node = SecondNode::default_for("vm");
        assert_eq!(
            hosts_file("vm", &node),
            "127.0.0.1 localhost\n10.231.0.1 vm\n10.231.0.2 vm-n2\n"
        );
    }
}
