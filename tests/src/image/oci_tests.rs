use super::*;
use crate::image::archive::DockerManifest;
use crate::image::busybox;
use crate::image::digest::{sha256_bytes, sha256_file};
use crate::image::test_support::{skopeo_json, small};
use std::io::Read;

/// Every entry of a tar file: name -> content (directories map to None).
fn tar_contents(path: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    let mut out = BTreeMap::new();
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        let data = if e.header().entry_type().is_dir() {
            None
        } else {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            Some(v)
        };
        assert_eq!(
            e.header().mtime().unwrap(),
            crate::image::FIXED_MTIME,
            "{name}"
        );
        names.push(name.clone());
        out.insert(name, data);
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "archive entries are sorted");
    out
}

#[test]
fn building_twice_gives_identical_digests_and_archives() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec = busybox::spec().unwrap();
    let x = build_image(&spec, a.path()).unwrap();
    let y = build_image(&spec, b.path()).unwrap();
    assert_eq!(
        (&x.manifest_digest, &x.config_digest, &x.layers),
        (&y.manifest_digest, &y.config_digest, &y.layers)
    );
    assert_eq!(
        sha256_file(&x.docker_archive).unwrap(),
        sha256_file(&y.docker_archive).unwrap()
    );
    assert_eq!(
        sha256_file(&x.oci_archive).unwrap(),
        sha256_file(&y.oci_archive).unwrap()
    );
    // The shared busybox layer is the same blob in every image built on it.
    assert_eq!(small("layered").layers[0], x.layers[0]);
}

#[test]
fn layout_documents_are_valid_and_consistent() {
    let img = small("busybox");
    let top = resolve_tag(&img.layout_dir, "latest").unwrap();
    assert_eq!(
        (top.digest.as_str(), top.media_type.as_str()),
        (img.manifest_digest.as_str(), MEDIA_MANIFEST)
    );
    // Parse with oci-spec's own types as an independent validity check.
    let raw = fs::read(blob_path(&img.layout_dir, &img.manifest_digest)).unwrap();
    assert_eq!(sha256_bytes(&raw), img.manifest_digest);
    let m: oci_spec::image::ImageManifest = serde_json::from_slice(&raw).unwrap();
    assert_eq!(m.layers().len(), 1);
    assert_eq!(m.layers()[0].digest().to_string(), img.layers[0].digest);
    assert_eq!(m.layers()[0].media_type().to_string(), MEDIA_LAYER_GZIP);
    let cfg_raw = fs::read(blob_path(&img.layout_dir, &img.config_digest)).unwrap();
    let cfg: oci_spec::image::ImageConfiguration = serde_json::from_slice(&cfg_raw).unwrap();
    let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(cfg.rootfs().diff_ids(), &diff_ids);
    assert_eq!(cfg.architecture().to_string(), crate::image::host_arch());
    assert_eq!(cfg.os().to_string(), "linux");
    assert_eq!(
        cfg.config().as_ref().unwrap().cmd().as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    // Every blob file is named by its digest.
    for e in fs::read_dir(img.layout_dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            hex_part(&sha256_file(&e.path()).unwrap().0),
            e.file_name().to_string_lossy()
        );
    }
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(img.layout_dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
}

#[test]
fn docker_archive_lists_the_right_files() {
    let img = small("layered");
    let files = tar_contents(&img.docker_archive);
    let manifest: Vec<DockerManifest> =
        serde_json::from_slice(files["manifest.json"].as_ref().unwrap()).unwrap();
    assert_eq!(manifest.len(), 1);
    let m = &manifest[0];
    assert_eq!(m.repo_tags, ["berth-test/layered:latest"]);
    assert_eq!(
        sha256_bytes(files[&m.config].as_ref().unwrap()),
        img.config_digest
    );
    assert_eq!(m.layers.len(), img.layers.len());
    for (name, layer) in m.layers.iter().zip(&img.layers) {
        let data = files[name].as_ref().unwrap();
        assert_eq!(
            (sha256_bytes(data), data.len() as u64),
            (layer.diff_id.clone(), layer.uncompressed_size)
        );
    }
    let repos: serde_json::Value =
        serde_json::from_slice(files["repositories"].as_ref().unwrap()).unwrap();
    assert_eq!(
        repos["berth-test/layered"]["latest"],
        hex_part(&img.layers.last().unwrap().diff_id)
    );
    // And the OCI archive is the layout, byte for byte.
    let oci = tar_contents(&img.oci_archive);
    for name in ["oci-layout", "index.json"] {
        assert_eq!(
            oci[name].as_ref().unwrap(),
            &fs::read(img.layout_dir.join(name)).unwrap()
        );
    }
    let blobs = oci
        .keys()
        .filter(|k| k.starts_with("blobs/sha256/"))
        .count();
    assert_eq!(
        blobs,
        fs::read_dir(img.layout_dir.join("blobs/sha256"))
            .unwrap()
            .count()
    );
}

#[test]
fn skopeo_accepts_all_three_outputs() {
    let img = small("layered");
    let layout_ref = format!("oci:{}:{}", img.layout_dir.display(), img.tag);
    let raw = skopeo_json(&["inspect", "--raw", &layout_ref]);
    let layers: Vec<&str> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let ours: Vec<&str> = img.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, ours);
    let oci_archive = format!("oci-archive:{}:{}", img.oci_archive.display(), img.tag);
    let via_archive = skopeo_json(&["inspect", &oci_archive]);
    assert_eq!(via_archive["Layers"].as_array().unwrap().len(), ours.len());
    assert_eq!(via_archive["Architecture"], crate::image::host_arch());
    // A docker archive stores uncompressed layers, so skopeo reports the diff_ids.
    let docker = skopeo_json(&[
        "inspect",
        &format!("docker-archive:{}", img.docker_archive.display()),
    ]);
    let diff_ids: Vec<&str> = img.layers.iter().map(|l| l.diff_id.as_str()).collect();
    let reported: Vec<&str> = docker["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(reported, diff_ids);
    assert_eq!(
        docker["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}
