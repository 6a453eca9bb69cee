//! A throw-away certificate authority and server certificate for the TLS registry,
//! made in-process so tests never depend on `openssl` command-line behaviour.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// PEM texts of a CA certificate and a server certificate + key it signed.
pub struct TlsFiles {
    /// The CA certificate that clients must trust.
    pub ca_pem: String,
    /// The server's certificate, valid for `127.0.0.1` and `localhost`.
    pub cert_pem: String,
    /// The server's private key.
    pub key_pem: String,
}

/// Makes a CA and a server certificate for 127.0.0.1/localhost signed by it.
pub fn generate() -> Result<TlsFiles, rcgen::Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "berth test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(TlsFiles {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
