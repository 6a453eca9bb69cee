//! A minimal client for the Distribution HTTP API, used by tests to look at what a
//! registry holds (catalog, manifest digests) and to check auth and TLS behaviour.

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::image::push::PushTarget;

/// Media types a manifest HEAD/GET accepts: OCI and Docker, single and index.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA certificate is not valid PEM.
    #[error("the registry CA certificate is not valid PEM: {0}")]
    Ca(ureq::Error),
    /// The request failed (connection, TLS, or an HTTP error status).
    #[error("{method} {url}: {source}")]
    Request {
        method: &'static str,
        url: String,
        source: ureq::Error,
    },
    /// The response lacked what the API promises.
    #[error("{url}: {reason}")]
    Response { url: String, reason: String },
}

/// An HTTP agent that trusts `ca_pem` (when given) instead of the system store and
/// reports HTTP error statuses as errors.
pub fn agent(ca_pem: Option<&[u8]>) -> Result<ureq::Agent, ClientError> {
    let mut tls = TlsConfig::builder();
    if let Some(pem) = ca_pem {
        let cert = Certificate::from_pem(pem).map_err(ClientError::Ca)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&[cert]));
    }
    let config = ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(true)
        .build();
    Ok(config.into())
}

/// The `Authorization` header value for basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A client bound to one registry, with its CA and credentials.
pub struct Client {
    agent: ureq::Agent,
    target: PushTarget,
}

impl Client {
    /// A client for the registry `target` describes.
    pub fn new(target: &PushTarget) -> Result<Self, ClientError> {
        Ok(Client {
            agent: agent(target.ca_pem.as_deref())?,
            target: target.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.base_url)
    }

    fn auth(&self) -> Option<String> {
        self.target
            .basic_auth
            .as_ref()
            .map(|(u, p)| basic_auth(u, p))
    }

    /// `GET /v2/` — succeeds when the registry accepts our TLS and credentials.
    pub fn ping(&self) -> Result<(), ClientError> {
        let url = self.url("/v2/");
        let mut req = self.agent.get(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        req.call()
            .map(|_| ())
            .map_err(|source| ClientError::Request {
                method: "GET",
                url,
                source,
            })
    }

    /// The repositories the registry lists in `/v2/_catalog`.
    pub fn catalog(&self) -> Result<Vec<String>, ClientError> {
        let url = self.url("/v2/_catalog?n=1000");
        let mut req = self.agent.get(&url);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|source| ClientError::Request {
            method: "GET",
            url: url.clone(),
            source,
        })?;
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|source| ClientError::Request {
                method: "GET",
                url: url.clone(),
                source,
            })?;
        let body: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::Response {
                url: url.clone(),
                reason: format!("not JSON: {e}"),
            })?;
        let repos = body["repositories"]
            .as_array()
            .ok_or_else(|| ClientError::Response {
                url,
                reason: "no repositories array".into(),
            })?;
        Ok(repos
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect())
    }

    /// The digest the registry reports (`Docker-Content-Digest`) for `repo:reference`.
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> Result<String, ClientError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let mut req = self.agent.head(&url).header("Accept", MANIFEST_ACCEPT);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|source| ClientError::Request {
            method: "HEAD",
            url: url.clone(),
            source,
        })?;
        resp.headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Response {
                url,
                reason: "no Docker-Content-Digest header".into(),
            })
    }
}
