//! Pushes against a real `docker-registry` 2.8 started per test.

use std::time::Duration;

use super::oci::{read_json_blob, Index, MEDIA_INDEX, MEDIA_MANIFEST};
use super::push::{push, PushTarget};
use super::test_support::{small, TestRegistry};

const ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

fn agent(ca_pem: Option<&[u8]>) -> ureq::Agent {
    let mut c = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)));
    if let Some(pem) = ca_pem {
        let cert = ureq::tls::Certificate::from_pem(pem).unwrap();
        let roots = ureq::tls::RootCerts::new_with_certs(&[cert]);
        c = c.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
    }
    c.build().new_agent()
}

/// HEAD a manifest and return (status, Docker-Content-Digest, Content-Type).
fn head_manifest(agent: &ureq::Agent, url: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut req = agent.head(url).header("Accept", ACCEPT);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let r = req.call().unwrap();
    let h = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        r.status().as_u16(),
        h("docker-content-digest"),
        h("content-type"),
    )
}

#[test]
fn push_image_and_index_to_plain_registry() {
    let reg = TestRegistry::start(None, None);
    let target = PushTarget {
        base_url: reg.url.clone(),
        ..Default::default()
    };
    let bb = small("busybox");
    let idx = small("busybox-index");
    let d1 = push(
        &bb.layout_dir,
        &bb.tag,
        &target,
        "berth-test/busybox",
        "latest",
    )
    .unwrap();
    assert_eq!(d1, bb.manifest_digest);
    // Again: every blob is skipped after HEAD and the digest is the same.
    assert_eq!(
        push(
            &bb.layout_dir,
            &bb.tag,
            &target,
            "berth-test/busybox",
            "again"
        )
        .unwrap(),
        d1
    );
    let d2 = push(
        &idx.layout_dir,
        &idx.tag,
        &target,
        "berth-test/busybox-index",
        "latest",
    )
    .unwrap();
    assert_eq!(d2, idx.manifest_digest);

    let a = agent(None);
    let mut r = a.get(format!("{}/v2/_catalog", reg.url)).call().unwrap();
    let catalog: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    let repos: Vec<&str> = catalog["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(repos, ["berth-test/busybox", "berth-test/busybox-index"]);

    let (status, digest, ctype) = head_manifest(
        &a,
        &format!("{}/v2/berth-test/busybox/manifests/latest", reg.url),
        None,
    );
    assert_eq!(
        (status, digest.as_str(), ctype.as_str()),
        (200, bb.manifest_digest.as_str(), MEDIA_MANIFEST)
    );
    let (status, digest, ctype) = head_manifest(
        &a,
        &format!("{}/v2/berth-test/busybox-index/manifests/latest", reg.url),
        None,
    );
    assert_eq!(
        (status, digest.as_str(), ctype.as_str()),
        (200, idx.manifest_digest.as_str(), MEDIA_INDEX)
    );
    // Each platform manifest of the index is there by digest, and so are its blobs.
    let index: Index = read_json_blob(&idx.layout_dir, &idx.manifest_digest).unwrap();
    for m in &index.manifests {
        let url = format!(
            "{}/v2/berth-test/busybox-index/manifests/{}",
            reg.url, m.digest
        );
        assert_eq!(head_manifest(&a, &url, None).1, m.digest);
    }
    for l in &bb.layers {
        let url = format!("{}/v2/berth-test/busybox/blobs/{}", reg.url, l.digest);
        assert_eq!(a.head(&url).call().unwrap().status().as_u16(), 200);
    }
}

#[test]
fn push_over_tls_with_basic_auth_and_clear_errors() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
    let htpasswd = format!("berth:{}\n", bcrypt::hash("s3cret", 4).unwrap());
    let reg = TestRegistry::start(Some((&cert, &key)), Some(&htpasswd));
    let bb = small("busybox");
    let good = PushTarget {
        base_url: reg.url.clone(),
        ca_pem: Some(cert.clone().into_bytes()),
        basic_auth: Some(("berth".into(), "s3cret".into())),
    };
    assert_eq!(
        push(
            &bb.layout_dir,
            "latest",
            &good,
            "berth-test/busybox",
            "latest"
        )
        .unwrap(),
        bb.manifest_digest
    );
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "berth:s3cret")
    );
    let url = format!("{}/v2/berth-test/busybox/manifests/latest", reg.url);
    assert_eq!(
        head_manifest(&agent(Some(cert.as_bytes())), &url, Some(&auth)).1,
        bb.manifest_digest
    );

    let wrong = PushTarget {
        basic_auth: Some(("berth".into(), "wrong".into())),
        ..good.clone()
    };
    let err = push(
        &bb.layout_dir,
        "latest",
        &wrong,
        "berth-test/busybox",
        "latest",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(&format!(
            "registry {} refused credentials for repo berth-test/busybox (401)",
            reg.url
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let untrusted = PushTarget {
        ca_pem: None,
        ..good.clone()
    };
    let err = push(
        &bb.layout_dir,
        "latest",
        &untrusted,
        "berth-test/busybox",
        "latest",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(&format!("cannot reach registry {}", reg.url)),
        "{err}"
    );

    let err = push(
        &bb.layout_dir,
        "no-such-tag",
        &good,
        "berth-test/busybox",
        "latest",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no manifest tagged \"no-such-tag\""), "{err}");
}
