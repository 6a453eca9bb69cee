//! Pull failures that must leave the store as it was: a corrupted blob in the
//! registry's storage, and a registry that stops in the middle of a transfer.

mod images;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use berth_tests::image::layer::{Entry, Layer};
use berth_tests::image::oci::{build_image, ImageSpec};
use berth_tests::image::push::push;
use images::{stack, Env};

/// A small image with content no other image has, pushed to the plain registry.
fn unique_image(s: &berth_tests::stack::Stack, name: &str) -> berth_tests::image::oci::BuiltImage {
    let stamp = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let mut spec = ImageSpec::new(name, "latest");
    spec.layers = vec![Layer::new().with(Entry::file("/unique", stamp.repeat(1000), 0o644))];
    let dir = tempfile::tempdir().unwrap().keep();
    let img = build_image(&spec, &dir).unwrap();
    push(
        &img.layout_dir,
        &img.tag,
        &s.plain.push_target(),
        &img.repository(),
        &img.tag,
    )
    .unwrap();
    img
}

#[test]
fn a_blob_whose_digest_does_not_match_is_an_error() {
    let (s, _) = stack();
    let img = unique_image(&s, "corrupt");
    let hex = img.layers[0]
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    let data = s.plain.storage_dir().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let env = Env::plain(&s.plain);
    let reference = format!("{}/{}:latest", s.plain.host(), img.repository());
    let err = env.fails(&["pull", "-q", &reference]);
    assert!(
        err.contains(&reference) && err.contains("is corrupt") && err.contains(&hex),
        "{err}"
    );
    assert!(
        env.store_files().is_empty(),
        "store unchanged: {:?}",
        env.store_files()
    );
}

/// Serves the image in `layout` (manifest `manifest`), but only the first half
/// of blob `cut` (with the full Content-Length), then closes the connection.
fn truncating_registry(
    layout: std::path::PathBuf,
    manifest: String,
    media: String,
    cut: String,
) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            r.read_line(&mut first).unwrap_or(0);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = first.split(' ').nth(1).unwrap_or("").to_string();
            let mut w = conn;
            let blob = |d: &str| {
                std::fs::read(
                    layout
                        .join("blobs/sha256")
                        .join(d.trim_start_matches("sha256:")),
                )
                .unwrap_or_default()
            };
            let (body, ctype, cut) = if path.contains("/manifests/") {
                (blob(&manifest), media.as_str(), false)
            } else if let Some((_, d)) = path.split_once("/blobs/") {
                (blob(d), "application/octet-stream", d == cut)
            } else {
                (b"{}".to_vec(), "application/json", false)
            };
            let _ = write!(w, "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let n = if cut { body.len() / 2 } else { body.len() };
            let _ = w.write_all(&body[..n]);
        }
    });
    port
}

#[test]
fn a_registry_that_stops_mid_transfer_fails_cleanly() {
    let (s, c) = stack();
    let img = &c.tools;
    let layer = img.layers.last().unwrap();
    let port = truncating_registry(
        img.layout_dir.clone(),
        img.manifest_digest.clone(),
        img.media_type.clone(),
        layer.digest.clone(),
    );
    let host = format!("127.0.0.1:{port}");
    let env = Env::new(std::slice::from_ref(&host), &[]);
    let reference = format!("{host}/berth-test/tools:latest");
    let err = env.fails(&["pull", "-q", &reference]);
    assert!(
        err.contains(&reference) && err.contains("stopped after") && err.contains(&layer.digest),
        "{err}"
    );
    assert!(
        env.store_files().is_empty(),
        "store unchanged: {:?}",
        env.store_files()
    );
    drop(s);
}
