//! A client for the OCI distribution API: TLS with the system CAs plus the
//! site's, plain HTTP only for registries the site lists as insecure,
//! anonymous / basic / bearer-token auth driven by the registry's challenge,
//! bounded retries, and blobs verified against their digest while they stream.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::Response;
use ureq::tls::TlsConfig;

use super::tls::{is_tls, roots};
use ureq::Body;

use super::auth::Credentials;
use super::challenge::parse_challenge;
use super::digest::{Digest, HashingReader};
use super::manifest::ACCEPT;
use super::reference::Reference;
use crate::site::RegistryConfig;

/// Errors talking to a registry; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A configured CA file is unusable.
    #[error("CA file {}: {reason}: fix registry.ca_files in the site config", path.display())]
    Ca { path: PathBuf, reason: String },
    /// Credentials are needed but none were found.
    #[error(
        "registry requires credentials ({0}): use --username/--password-stdin or `podman login`"
    )]
    NeedCredentials(u16),
    /// The registry rejected the credentials.
    #[error("registry refused credentials ({0}): check --username or ~/.docker/config.json")]
    Refused(u16),
    /// Manifest or blob is absent.
    #[error("{what} not found (404): check the repository name and tag")]
    NotFound { what: String },
    /// Another HTTP error status.
    #[error("{url}: unexpected HTTP status {status}")]
    Status { url: String, status: u16 },
    /// TLS handshake failure (usually an unknown CA).
    #[error("TLS error with {host}: {cause}: add the registry's CA to registry.ca_files in the site config (or --ca-file), or list the registry as insecure if it speaks plain HTTP")]
    Tls { host: String, cause: String },
    /// Connection failed, reset or timed out, after all retries.
    #[error("cannot reach {url} after {attempts} attempts: {cause}")]
    Network {
        url: String,
        attempts: u32,
        cause: String,
    },
    /// A blob transfer stopped early.
    #[error("transfer of {digest} stopped after {got} of {expected} bytes ({attempts} attempts): {cause}")]
    Interrupted {
        digest: Digest,
        got: u64,
        expected: u64,
        attempts: u32,
        cause: String,
    },
    /// Content does not match its digest: never trusted.
    #[error("{what} {expected} is corrupt: its content hashes to {actual}; the registry's copy is damaged")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    /// The registry answered something that is not valid.
    #[error("invalid answer from the registry: {0}")]
    Invalid(String),
    /// Another layer failed, so this transfer was abandoned.
    #[error("transfer cancelled")]
    Cancelled,
    /// A local file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Local {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A client bound to one repository.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    host: String,
    repo: String,
    creds: Option<Credentials>,
    auth: Mutex<Option<String>>,
    retries: u32,
}

impl Client {
    /// A client for `r`'s repository; `ca_files` add to the site's CAs.
    pub fn new(
        r: &Reference,
        site: &RegistryConfig,
        ca_files: &[PathBuf],
        creds: Option<Credentials>,
    ) -> Result<Self, RegistryError> {
        crate::nss::builtin_sources_only();
        let insecure = site.insecure.iter().any(|h| h == &r.registry);
        let all_cas: Vec<PathBuf> = site.ca_files.iter().chain(ca_files).cloned().collect();
        let tls = TlsConfig::builder().root_certs(roots(&all_cas)?).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            // A registry that stalls mid-blob is an error, not a hang.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let scheme = if insecure { "http" } else { "https" };
        Ok(Client {
            agent,
            base: format!("{scheme}://{}", r.api_host()),
            host: r.api_host().into(),
            repo: r.repository.clone(),
            creds,
            auth: Mutex::new(None),
            retries: site.retries.max(1),
        })
    }

    fn net_err(&self, url: &str, attempts: u32, e: ureq::Error) -> RegistryError {
        if is_tls(&e) {
            RegistryError::Tls {
                host: self.host.clone(),
                cause: e.to_string(),
            }
        } else {
            RegistryError::Network {
                url: url.into(),
                attempts,
                cause: e.to_string(),
            }
        }
    }

    /// GET with auth challenge handling and bounded retries.
    fn get(
        &self,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response<Body>, RegistryError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repo);
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            attempt += 1;
            let mut req = self.agent.get(&url);
            if let Some(a) = accept {
                req = req.header("Accept", a);
            }
            if let Some(h) = self.auth.lock().expect("auth lock").clone() {
                req = req.header("Authorization", h);
            }
            let resp = match req.call() {
                Ok(r) => r,
                // A certificate problem does not go away by retrying.
                Err(e) if is_tls(&e) => return Err(self.net_err(&url, attempt, e)),
                Err(e) if attempt < self.retries => {
                    tracing::warn!(url, attempt, error = %e, "request failed; retrying");
                    backoff(attempt);
                    continue;
                }
                Err(e) => return Err(self.net_err(&url, attempt, e)),
            };
            let status = resp.status().as_u16();
            match status {
                200..=299 => return Ok(resp),
                401 if !authenticated => {
                    authenticated = true;
                    attempt -= 1;
                    let challenge = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.authenticate(&challenge, status)?;
                }
                401 | 403 if self.creds.is_some() => return Err(RegistryError::Refused(status)),
                401 | 403 => return Err(RegistryError::NeedCredentials(status)),
                404 => return Err(RegistryError::NotFound { what: what.into() }),
                429 | 500..=599 if attempt < self.retries => {
                    tracing::warn!(url, attempt, status, "registry error; retrying");
                    backoff(attempt);
                }
                _ => return Err(RegistryError::Status { url, status }),
            }
        }
    }

    /// Answers a `WWW-Authenticate` challenge (Basic or Bearer).
    fn authenticate(&self, challenge: &str, status: u16) -> Result<(), RegistryError> {
        let (scheme, params) = parse_challenge(challenge);
        let header = match scheme.to_ascii_lowercase().as_str() {
            "basic" => match &self.creds {
                Some(c) => c.basic(),
                None => return Err(RegistryError::NeedCredentials(status)),
            },
            "bearer" => {
                let realm = params
                    .iter()
                    .find(|(k, _)| k == "realm")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        RegistryError::Invalid("bearer challenge without realm".into())
                    })?;
                let mut req = self
                    .agent
                    .get(&realm)
                    .query("scope", format!("repository:{}:pull", self.repo));
                if let Some((_, s)) = params.iter().find(|(k, _)| k == "service") {
                    req = req.query("service", s);
                }
                if let Some(c) = &self.creds {
                    req = req.header("Authorization", c.basic());
                }
                let mut resp = req.call().map_err(|e| self.net_err(&realm, 1, e))?;
                match resp.status().as_u16() {
                    200 => {}
                    s @ (401 | 403) if self.creds.is_some() => {
                        return Err(RegistryError::Refused(s))
                    }
                    s @ (401 | 403) => return Err(RegistryError::NeedCredentials(s)),
                    s => {
                        return Err(RegistryError::Status {
                            url: realm,
                            status: s,
                        })
                    }
                }
                let v: serde_json::Value = resp
                    .body_mut()
                    .read_to_vec()
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
                    .map_err(|e| RegistryError::Invalid(format!("token answer: {e}")))?;
                let token = v
                    .get("token")
                    .or_else(|| v.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| RegistryError::Invalid("token answer without a token".into()))?;
                format!("Bearer {token}")
            }
            _ => return Err(RegistryError::NeedCredentials(status)),
        };
        *self.auth.lock().expect("auth lock") = Some(header);
        Ok(())
    }

    /// Fetches a manifest or index by tag or digest; returns its bytes and digest.
    pub fn manifest(&self, reference: &str) -> Result<(Vec<u8>, Digest), RegistryError> {
        let mut resp = self.get(
            &format!("manifests/{reference}"),
            Some(ACCEPT),
            &format!("manifest {reference}"),
        )?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(8 << 20)
            .read_to_vec()
            .map_err(|e| self.net_err(reference, 1, e))?;
        let actual = Digest::of(&bytes);
        if let Ok(expected) = Digest::parse(reference) {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    what: "manifest",
                    expected,
                    actual,
                });
            }
        }
        Ok((bytes, actual))
    }

    /// Fetches a small blob (the image config) into memory, verified.
    pub fn blob_bytes(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let mut resp = self.get(&format!("blobs/{digest}"), None, &format!("blob {digest}"))?;
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| self.net_err(&digest.to_string(), 1, e))?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(RegistryError::DigestMismatch {
                what: "blob",
                expected: digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Streams a blob into `dest`, hashing as it goes; retries from scratch on
    /// network errors; `progress` gets byte counts and returns false to cancel.
    pub fn blob_to_file(
        &self,
        digest: &Digest,
        size: u64,
        dest: &Path,
        progress: &(dyn Fn(u64) -> bool + Sync),
    ) -> Result<(), RegistryError> {
        let local = |source| RegistryError::Local {
            path: dest.into(),
            source,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let resp = self.get(&format!("blobs/{digest}"), None, &format!("blob {digest}"))?;
            let file = std::fs::File::create(dest).map_err(local)?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut reader = HashingReader::new(resp.into_body().into_reader());
            let mut buf = vec![0u8; 1 << 18];
            let result = loop {
                match reader.read(&mut buf) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        out.write_all(&buf[..n]).map_err(local)?;
                        if !progress(n as u64) {
                            return Err(RegistryError::Cancelled);
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            };
            out.flush().map_err(local)?;
            let got = reader.count();
            match result {
                Ok(()) if got == size || size == 0 => {
                    let (actual, _) = reader.finish();
                    if &actual != digest {
                        return Err(RegistryError::DigestMismatch {
                            what: "blob",
                            expected: digest.clone(),
                            actual,
                        });
                    }
                    return Ok(());
                }
                r => {
                    let cause = match r {
                        Err(e) => e.to_string(),
                        Ok(()) => "connection closed early".into(),
                    };
                    if attempt >= self.retries {
                        return Err(RegistryError::Interrupted {
                            digest: digest.clone(),
                            got,
                            expected: size,
                            attempts: attempt,
                            cause,
                        });
                    }
                    tracing::warn!(%digest, attempt, got, cause, "blob transfer interrupted; retrying");
                    backoff(attempt);
                }
            }
        }
    }
}

fn backoff(attempt: u32) {
    std::thread::sleep(Duration::from_millis(200 * (1 << attempt.min(5))));
}
