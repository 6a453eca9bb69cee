//! Node 2's view of this host's loopback services.
//!
//! Tests name the registries `127.0.0.1:PORT` (and berth's site config lists
//! them so), but node 2 has a loopback of its own. The relay listens on
//! 127.0.0.1:PORT inside node 2's network namespace and connects each client to
//! 127.0.0.1:PORT on this host, so an image reference means the same thing on
//! both nodes, as a registry's host name would on a real cluster.
//!
//! One process holds sockets in both namespaces: it binds its listeners after
//! `setns` into node 2's namespace, returns to its own, and only then starts
//! threads, which therefore open their connections on this host.

use std::fs::File;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread;

/// Errors starting the relay.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// A namespace file could not be opened or joined.
    #[error("cannot enter network namespace {path}: {source}")]
    Namespace { path: String, source: io::Error },
    /// A port could not be bound inside node 2.
    #[error("cannot listen on 127.0.0.1:{port} in {netns}: {source}")]
    Listen {
        port: u16,
        netns: String,
        source: io::Error,
    },
}

fn enter(ns: &File, path: &Path) -> Result<(), RelayError> {
    // SAFETY: setns only switches this thread's network namespace; the fd is valid.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(RelayError::Namespace {
            path: path.display().to_string(),
            source: io::Error::last_os_error(),
        })
    }
}

/// Binds 127.0.0.1:PORT for every port inside the namespace `netns` and relays
/// connections to the same port on this host's loopback; never returns unless
/// binding fails.
pub fn run(netns: &Path, ports: &[u16]) -> Result<(), RelayError> {
    let open = |path: &Path| {
        File::open(path).map_err(|source| RelayError::Namespace {
            path: path.display().to_string(),
            source,
        })
    };
    let home_path = Path::new("/proc/thread-self/ns/net");
    let home = open(home_path)?;
    let node = open(netns)?;
    enter(&node, netns)?;
    let listeners: Result<Vec<_>, _> = ports
        .iter()
        .map(|&port| {
            TcpListener::bind(("127.0.0.1", port))
                .map(|l| (port, l))
                .map_err(|source| RelayError::Listen {
                    port,
                    netns: netns.display().to_string(),
                    source,
                })
        })
        .collect();
    enter(&home, home_path)?;
    let handles: Vec<_> = listeners?
        .into_iter()
        .map(|(port, listener)| thread::spawn(move || serve(listener, port)))
        .collect();
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

fn serve(listener: TcpListener, port: u16) {
    for client in listener.incoming().flatten() {
        thread::spawn(move || {
            // A refused upstream (registry stopped) closes the client: it sees the
            // same thing as on this host.
            if let Ok(upstream) = TcpStream::connect(("127.0.0.1", port)) {
                pipe(client, upstream);
            }
        });
    }
}

/// Copies both ways until each side has closed its half.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || copy(b2, a2));
    copy(a, b);
    let _ = back.join();
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
