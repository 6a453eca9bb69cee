//! Registry credentials from the files Docker and Podman write on `login`
//! (so credentials that work interactively also work in batch jobs), or
//! given on the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

impl Credentials {
    /// The `Authorization: Basic` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
}

/// The auth files consulted, in order (Podman's first, as Podman does).
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k| std::env::var_os(k).map(PathBuf::from);
    let mut files = Vec::new();
    files.extend(env("REGISTRY_AUTH_FILE"));
    if let Some(rt) = env("XDG_RUNTIME_DIR") {
        files.push(rt.join("containers/auth.json"));
    }
    if let Some(home) = env("HOME") {
        files.push(home.join(".config/containers/auth.json"));
    }
    match env("DOCKER_CONFIG") {
        Some(d) => files.push(d.join("config.json")),
        None => files.extend(env("HOME").map(|h| h.join(".docker/config.json"))),
    }
    files
}

/// Keys a registry may be stored under (`host`, `https://host`, Docker Hub's legacy URL).
fn keys(registry: &str) -> Vec<String> {
    let mut k = vec![
        registry.to_string(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if registry == "docker.io" {
        k.push("https://index.docker.io/v1/".into());
        k.push("index.docker.io".into());
        k.push("registry-1.docker.io".into());
    }
    k
}

/// Credentials for `registry` from the first auth file that has them.
pub fn lookup(registry: &str) -> Option<Credentials> {
    auth_files().into_iter().find_map(|f| {
        let text = std::fs::read(&f).ok()?;
        let parsed: AuthFile = match serde_json::from_slice(&text) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %e, "ignoring unreadable auth file");
                return None;
            }
        };
        let entry = keys(registry)
            .into_iter()
            .find_map(|k| parsed.auths.get(&k))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.as_ref()?)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        tracing::debug!(file = %f.display(), registry, "using stored credentials");
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_auth_entries() {
        let d = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            d.path().join("config.json"),
            format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let parsed: AuthFile =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        let e = keys("reg.example:5000")
            .into_iter()
            .find_map(|k| parsed.auths.get(&k))
            .unwrap();
        assert_eq!(e.auth.as_deref(), Some(auth.as_str()));
        let c = Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        };
        assert_eq!(c.basic(), format!("Basic {auth}"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
