//! Shared helpers for the image unit tests: cached small images, skopeo, and
//! a throwaway `docker-registry` process.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::catalog::build_one;
use super::oci::BuiltImage;

/// A fixed directory so repeated test runs reuse builds through the stamp cache
/// (parallel tests are serialized by the per-image lock).
pub fn unit_out_dir() -> PathBuf {
    std::env::temp_dir().join("berth-tests-image-unit")
}

/// One of the small catalog images, built once and then reused.
pub fn small(name: &str) -> BuiltImage {
    build_one(&unit_out_dir(), name).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// Runs `skopeo <args>` and parses its JSON output.
pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("skopeo {args:?} printed non-json: {e}"))
}

/// A `docker-registry serve` on 127.0.0.1 with temp storage, killed on drop.
pub struct TestRegistry {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Holds the storage and config until the registry is gone.
    pub dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Starts a registry; `tls` is (cert pem, key pem), `htpasswd` a bcrypt htpasswd file.
    pub fn start(tls: Option<(&str, &str)>, htpasswd: Option<&str>) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            d.join("storage").display()
        );
        if let Some((cert, key)) = tls {
            std::fs::write(d.join("cert.pem"), cert).unwrap();
            std::fs::write(d.join("key.pem"), key).unwrap();
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                d.join("cert.pem").display(),
                d.join("key.pem").display()
            );
        }
        if let Some(h) = htpasswd {
            std::fs::write(d.join("htpasswd"), h).unwrap();
            config += &format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                d.join("htpasswd").display()
            );
        }
        std::fs::write(d.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(d.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(d.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let reg = TestRegistry {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            dir,
        };
        let listening = crate::proc::wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(
            listening,
            "docker-registry did not listen on {port}: {}",
            std::fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default()
        );
        reg
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
