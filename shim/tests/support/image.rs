//! A one-layer OCI image of a rootfs directory, as an archive for
//! `ctr image import` (no registry needed): blobs named by their sha256,
//! a config, a manifest, and an index that names the image.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::json;

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Moves FILE into DIR/blobs/sha256 under its digest; (digest, size).
fn add_blob(dir: &Path, file: &Path) -> (String, u64) {
    let hex = sha256(file);
    let size = fs::metadata(file).unwrap().len();
    fs::rename(file, dir.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), size)
}

fn add_json(dir: &Path, name: &str, v: &serde_json::Value) -> (String, u64) {
    let p = dir.join(name);
    fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
    add_blob(dir, &p)
}

/// Writes the archive of ROOTFS as image NAME into ARCHIVE.
pub fn oci_archive(rootfs: &Path, name: &str, work: &Path, archive: &Path) {
    let dir = work.join("layout");
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let layer = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of {}", rootfs.display());
    let (layer_digest, layer_size) = add_blob(&dir, &layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    });
    let (config_digest, config_size) = add_json(&dir, "config.json", &config);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = add_json(&dir, "manifest.json", &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": name},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success(), "tar of the layout");
}
