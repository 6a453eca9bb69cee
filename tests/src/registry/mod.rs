//! A real Distribution registry (Debian's `docker-registry`) on 127.0.0.1, in
//! two flavours: plain HTTP, and TLS with a generated CA plus htpasswd basic auth.
//!
//! Like the cluster, [`Registry::start`] reuses an instance that already runs
//! with the same configuration.

pub mod client;
mod tls;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::{self, Daemon, DaemonError};
use crate::image::push::PushTarget;
use crate::{fsutil, paths, proc};

/// Environment key marking the registry processes the harness starts.
pub const MARK: &str = "BERTH_DEV_REGISTRY";
/// The user name accepted by the secure registry.
pub const USER: &str = "berth";
/// The password accepted by the secure registry (a test secret, not a real one).
pub const PASSWORD: &str = "berth-test-password";

/// Errors starting or stopping a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The port is held by another program.
    #[error("registry port {port} is already in use by {owner}: stop that program or choose another port")]
    PortTaken { port: u16, owner: String },
    /// The daemon did not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// Certificates could not be made.
    #[error("cannot generate the registry's TLS certificate: {0}")]
    Tls(#[from] rcgen::Error),
    /// The password could not be hashed.
    #[error("cannot hash the registry password: {0}")]
    Htpasswd(#[from] bcrypt::BcryptError),
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Teardown could not stop everything.
    #[error("registry processes still running after teardown: {0:?}: kill them by hand")]
    Leftover(Vec<i32>),
}

/// How to set up one registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Directory holding config, storage, certificates and log.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Serve HTTPS with a generated CA and require basic auth.
    pub secure: bool,
}

impl RegistryConfig {
    /// The default plain-HTTP registry on 127.0.0.1:15000.
    pub fn plain() -> Self {
        RegistryConfig {
            dir: paths::registry_dir("plain"),
            port: 15000,
            secure: false,
        }
    }

    /// The default TLS + basic-auth registry on 127.0.0.1:15443.
    pub fn secure() -> Self {
        RegistryConfig {
            dir: paths::registry_dir("secure"),
            port: 15443,
            secure: true,
        }
    }
}

/// A registry instance (running or not).
#[derive(Debug, Clone)]
pub struct Registry {
    cfg: RegistryConfig,
}

impl Registry {
    /// A handle on the registry described by `cfg`, started or not.
    pub fn new(cfg: RegistryConfig) -> Self {
        Registry { cfg }
    }

    /// Starts the registry, or reuses it when it already runs with this config.
    pub fn start(cfg: RegistryConfig) -> Result<Self, RegistryError> {
        let reg = Registry::new(cfg);
        reg.start_daemon()?;
        Ok(reg)
    }

    /// Starts (or reuses) the default registry of this flavour under a lock, so
    /// parallel test processes start it once.
    pub fn shared(cfg: RegistryConfig) -> Result<Self, RegistryError> {
        let lock = paths::root().join("registry.lock");
        mkdir(&paths::root())?;
        let _held = crate::lock::exclusive(&lock)
            .map_err(|source| RegistryError::Io { path: lock, source })?;
        Registry::start(cfg)
    }

    /// The base URL, e.g. `http://127.0.0.1:15000`.
    pub fn url(&self) -> String {
        let scheme = if self.cfg.secure { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.cfg.port)
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.cfg.port)
    }

    /// The configuration.
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    /// The CA certificate file clients must trust (secure flavour only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.cfg.secure.then(|| self.cfg.dir.join("tls/ca.pem"))
    }

    /// Where the registry keeps blobs and manifests (tests corrupt blobs here).
    pub fn storage_dir(&self) -> PathBuf {
        self.cfg.dir.join("data")
    }

    /// Where and how to push to this registry, with the right CA and credentials.
    pub fn push_target(&self) -> PushTarget {
        PushTarget {
            base_url: self.url(),
            ca_pem: self.ca_file().and_then(|f| fs::read(f).ok()),
            basic_auth: self
                .cfg
                .secure
                .then(|| (USER.to_string(), PASSWORD.to_string())),
        }
    }

    fn mark(&self) -> String {
        self.cfg.dir.display().to_string()
    }

    fn config_yaml(&self) -> String {
        let d = self.cfg.dir.display();
        let mut yaml = format!(
            "# Written by berth's test harness.\n\
             version: 0.1\n\
             log:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {d}/data\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: berth-test-secret\n",
            port = self.cfg.port
        );
        if self.cfg.secure {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {d}/tls/server.pem\n    key: {d}/tls/server.key\n\
                 auth:\n  htpasswd:\n    realm: berth-test\n    path: {d}/htpasswd\n"
            ));
        }
        yaml
    }

    fn write_files(&self) -> Result<bool, RegistryError> {
        let d = &self.cfg.dir;
        mkdir(d)?;
        mkdir(&d.join("data"))?;
        let config = d.join("config.yml");
        let yaml = self.config_yaml();
        let unchanged = fs::read_to_string(&config).is_ok_and(|old| old == yaml);
        write(&config, yaml.as_bytes(), 0o644)?;
        if self.cfg.secure && !d.join("tls/server.key").exists() {
            mkdir(&d.join("tls"))?;
            let files = tls::generate()?;
            write(&d.join("tls/ca.pem"), files.ca_pem.as_bytes(), 0o644)?;
            write(&d.join("tls/server.pem"), files.cert_pem.as_bytes(), 0o644)?;
            write(&d.join("tls/server.key"), files.key_pem.as_bytes(), 0o600)?;
        }
        if self.cfg.secure && !d.join("htpasswd").exists() {
            // Distribution only accepts bcrypt entries in htpasswd files.
            let hash =
                bcrypt::hash_with_result(PASSWORD, 8)?.format_for_version(bcrypt::Version::TwoY);
            write(
                &d.join("htpasswd"),
                format!("{USER}:{hash}\n").as_bytes(),
                0o600,
            )?;
        }
        Ok(unchanged)
    }

    fn start_daemon(&self) -> Result<(), RegistryError> {
        let unchanged = self.write_files()?;
        if unchanged && self.is_running() {
            return Ok(());
        }
        self.stop()?;
        if proc::port_in_use(self.cfg.port) {
            let owner = proc::port_owner(self.cfg.port)
                .map(|(pid, comm)| format!("pid {pid} ({comm})"))
                .unwrap_or_else(|| "another program".into());
            return Err(RegistryError::PortTaken {
                port: self.cfg.port,
                owner,
            });
        }
        let mark = self.mark();
        let daemon = Daemon {
            name: "registry",
            program: "/usr/bin/docker-registry",
            args: vec![
                "serve".into(),
                self.cfg.dir.join("config.yml").display().to_string(),
            ],
            package: "docker-registry",
            run_dir: &self.cfg.dir,
            mark: (MARK, &mark),
            env: vec![],
        };
        let port = self.cfg.port;
        daemon.start(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(())
    }

    /// True when this registry's daemon runs.
    pub fn is_running(&self) -> bool {
        daemon::running(&self.cfg.dir, "registry").is_some()
    }

    /// Live processes started for this registry.
    pub fn processes(&self) -> Vec<i32> {
        proc::with_env(MARK, &self.mark())
    }

    /// Stops the registry; fails if one of its processes survives.
    pub fn stop(&self) -> Result<(), RegistryError> {
        daemon::stop(&self.cfg.dir, "registry", Duration::from_secs(10));
        let left = daemon::kill_marked((MARK, &self.mark()));
        if left.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::Leftover(left))
        }
    }
}

impl daemon::Stop for Registry {
    type Error = RegistryError;
    fn teardown(&self) -> Result<(), RegistryError> {
        self.stop()
    }
}

fn mkdir(path: &Path) -> Result<(), RegistryError> {
    fsutil::mkdir(path, 0o755).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), RegistryError> {
    fsutil::write_atomic(path, bytes, mode).map_err(|source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    })
}
