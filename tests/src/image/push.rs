//! Pushing an OCI layout to a Distribution registry (`docker-registry` 2.8).
//!
//! Blobs go up monolithically (HEAD to skip existing ones, POST to open an
//! upload, PUT with `digest=` to finish); manifests after their blobs, and an
//! index after all its manifests, because the registry validates references.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use ureq::http::Response;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Body};

use super::oci::{
    blob_path, read_json_blob, resolve_tag, Descriptor, Index, Manifest, MEDIA_INDEX,
    MEDIA_MANIFEST,
};
use super::ImageError;

/// Where to push.
#[derive(Debug, Clone, Default)]
pub struct PushTarget {
    /// Registry base URL, e.g. `http://127.0.0.1:5000` or `https://127.0.0.1:5443`.
    pub base_url: String,
    /// PEM of a (self-signed) CA to trust instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Basic-auth user and password, sent on every request.
    pub basic_auth: Option<(String, String)>,
}

/// Pushes the manifest or index tagged `tag_in_layout` in `layout_dir` to
/// `repo:tag` and returns the manifest digest the registry reported, which
/// must equal the local one.
pub fn push(
    layout_dir: &Path,
    tag_in_layout: &str,
    target: &PushTarget,
    repo: &str,
    tag: &str,
) -> Result<String, ImageError> {
    let client = Client::new(target, repo)?;
    let top = resolve_tag(layout_dir, tag_in_layout)?;
    match top.media_type.as_str() {
        MEDIA_INDEX => {
            let index: Index = read_json_blob(layout_dir, &top.digest)?;
            for m in &index.manifests {
                push_manifest(&client, layout_dir, m, &m.digest)?;
            }
            client.put_manifest(layout_dir, &top, tag)
        }
        MEDIA_MANIFEST => push_manifest(&client, layout_dir, &top, tag),
        other => Err(ImageError::Layout {
            path: layout_dir.to_path_buf(),
            reason: format!("tag {tag_in_layout} points at unsupported media type {other}"),
        }),
    }
}

fn push_manifest(
    client: &Client,
    layout: &Path,
    desc: &Descriptor,
    reference: &str,
) -> Result<String, ImageError> {
    let manifest: Manifest = read_json_blob(layout, &desc.digest)?;
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        client.upload_blob(layout, blob)?;
    }
    client.put_manifest(layout, desc, reference)
}

struct Client<'a> {
    agent: Agent,
    base: String,
    repo: &'a str,
    auth: Option<String>,
}

impl<'a> Client<'a> {
    fn new(target: &PushTarget, repo: &'a str) -> Result<Self, ImageError> {
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(600)));
        if let Some(pem) = &target.ca_pem {
            let cert = Certificate::from_pem(pem).map_err(|e| {
                ImageError::Registry(format!(
                    "ca_pem for {} is not a pem certificate: {e}",
                    target.base_url
                ))
            })?;
            let tls = TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&[cert]))
                .build();
            config = config.tls_config(tls);
        }
        let auth = target.basic_auth.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let base = target.base_url.trim_end_matches('/').to_string();
        Ok(Client {
            agent: config.build().new_agent(),
            base,
            repo,
            auth,
        })
    }

    fn upload_blob(&self, layout: &Path, blob: &Descriptor) -> Result<(), ImageError> {
        let url = format!("{}/v2/{}/blobs/{}", self.base, self.repo, blob.digest);
        let head = self.send("HEAD", &url, self.with_auth(self.agent.head(&url)).call())?;
        match head.status().as_u16() {
            200 => return Ok(()),
            404 => {}
            _ => return Err(self.status_error("HEAD", &url, head)),
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base, self.repo);
        let resp = self.send(
            "POST",
            &start,
            self.with_auth(self.agent.post(&start)).send_empty(),
        )?;
        if resp.status().as_u16() != 202 {
            return Err(self.status_error("POST", &start, resp));
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ImageError::Registry(format!(
                    "registry {} gave no Location for an upload to repo {}",
                    self.base, self.repo
                ))
            })?;
        let url = upload_url(&self.base, location, &blob.digest);
        let path = blob_path(layout, &blob.digest);
        let file = File::open(&path).map_err(ImageError::io("cannot open blob", &path))?;
        let put = self
            .with_auth(self.agent.put(&url))
            .header("Content-Type", "application/octet-stream");
        let resp = self.send("PUT", &url, put.send(file))?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("PUT", &url, resp));
        }
        Ok(())
    }

    fn put_manifest(
        &self,
        layout: &Path,
        desc: &Descriptor,
        reference: &str,
    ) -> Result<String, ImageError> {
        let path = blob_path(layout, &desc.digest);
        let bytes = std::fs::read(&path).map_err(ImageError::io("cannot read manifest", &path))?;
        let url = format!("{}/v2/{}/manifests/{}", self.base, self.repo, reference);
        let req = self
            .with_auth(self.agent.put(&url))
            .header("Content-Type", &desc.media_type);
        let resp = self.send("PUT", &url, req.send(&bytes[..]))?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("PUT", &url, resp));
        }
        let remote = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if remote != desc.digest {
            return Err(ImageError::Registry(format!(
                "registry {} stored manifest {url} for repo {} as {remote:?} but the local digest is {}; the registry rewrote the manifest",
                self.base, self.repo, desc.digest
            )));
        }
        Ok(remote.to_string())
    }

    fn with_auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        r: Result<Response<Body>, ureq::Error>,
    ) -> Result<Response<Body>, ImageError> {
        r.map_err(|e| {
            ImageError::Registry(format!(
                "cannot reach registry {} ({method} {url}) for repo {}: {e}",
                self.base, self.repo
            ))
        })
    }

    /// One line naming the registry, repo, request and status, with a hint for the usual causes.
    fn status_error(&self, method: &str, url: &str, mut resp: Response<Body>) -> ImageError {
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        let detail = body
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        let (base, repo) = (&self.base, self.repo);
        ImageError::Registry(match status {
            401 => format!("registry {base} refused credentials for repo {repo} (401) on {method} {url}; check the user and password"),
            403 => format!("registry {base} denied access to repo {repo} (403) on {method} {url}"),
            _ => format!("registry {base} answered {method} {url} for repo {repo} with status {status}: {detail}"),
        })
    }
}

/// The URL that completes an upload: `location` may be absolute or relative
/// to the registry and may already carry a query (the upload state), so
/// `digest=` is joined with `&` or `?` accordingly.
pub fn upload_url(base: &str, location: &str, digest: &str) -> String {
    let absolute = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            location.trim_start_matches('/')
        )
    };
    let sep = if absolute.contains('?') { '&' } else { '?' };
    format!("{absolute}{sep}digest={}", digest.replace(':', "%3A"))
}

#[cfg(test)]
mod tests {
    use super::upload_url;

    #[test]
    fn upload_url_joins_relative_absolute_and_queries() {
        let d = "sha256:ab";
        assert_eq!(
            upload_url("http://r:5000/", "/v2/x/blobs/uploads/u1?_state=s", d),
            "http://r:5000/v2/x/blobs/uploads/u1?_state=s&digest=sha256%3Aab"
        );
        assert_eq!(
            upload_url("http://r:5000", "v2/x/blobs/uploads/u1", d),
            "http://r:5000/v2/x/blobs/uploads/u1?digest=sha256%3Aab"
        );
        assert_eq!(
            upload_url("http://r:5000", "https://other/up?a=b", d),
            "https://other/up?a=b&digest=sha256%3Aab"
        );
    }
}
