//! Trust roots (the system bundle plus the site's CA files) and TLS error detection.

use std::path::{Path, PathBuf};

use ureq::tls::{parse_pem, PemItem, RootCerts};

use super::registry::RegistryError;

/// The system CA bundle plus `extra` PEM files (which must exist and hold a certificate).
pub fn roots(extra: &[PathBuf]) -> Result<RootCerts, RegistryError> {
    let mut certs = Vec::new();
    for path in std::iter::once(Path::new("/etc/ssl/certs/ca-certificates.crt"))
        .chain(extra.iter().map(PathBuf::as_path))
    {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(_) if !extra.iter().any(|e| e == path) => continue, // no system bundle
            Err(e) => {
                return Err(RegistryError::Ca {
                    path: path.into(),
                    reason: e.to_string(),
                })
            }
        };
        let before = certs.len();
        for item in parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.len() == before && extra.iter().any(|e| e == path) {
            return Err(RegistryError::Ca {
                path: path.into(),
                reason: "no PEM certificate in it".into(),
            });
        }
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    })
}

/// TLS failures arrive as ureq TLS errors or as I/O errors wrapping rustls's.
pub fn is_tls(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Rustls(_) | ureq::Error::Tls(_) | ureq::Error::TlsRequired => true,
        ureq::Error::Io(io) => io
            .get_ref()
            .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some()),
        _ => false,
    }
}
