//! Container checkpoint and restore through containerd 1.6's runc shim
//! with snaprun as its runc binary: `ctr containers checkpoint --task` and
//! `ctr containers restore --live` of a busybox container counting into a
//! tmpfs file (the image is built and imported by the test).

mod ckpt_support;
mod oci_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

use ckpt_support::{counter, counter_at_least, read_in, COUNTER};
use oci_support::containerd::Containerd;
use oci_support::{wait_for, SNAPRUN};
use serde_json::json;

/// An OCI image archive (layout: `oci-layout`, `index.json`, blobs) of a
/// busybox rootfs, named NAME, for `ctr images import`.
fn busybox_image_archive(dir: &Path, name: &str) -> PathBuf {
    let rootfs = dir.join("image-rootfs");
    oci_support::busybox_rootfs(&rootfs);
    fs::create_dir_all(rootfs.join("run")).unwrap();
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let layer = dir.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the rootfs failed");
    // Blobs are named by their SHA-256 (coreutils' sha256sum).
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = dir.join("blob.tmp");
        fs::write(&tmp, bytes).unwrap();
        let out = Command::new("sha256sum").arg(&tmp).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let d = text.split_whitespace().next().unwrap().to_string();
        fs::rename(&tmp, blobs.join(&d)).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(&fs::read(&layer).unwrap());
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "config": {"Cmd": ["sh"]}
    });
    let (config_digest, config_size) = put(config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = put(manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": manifest_digest, "size": manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": name}}]
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the image layout failed");
    archive
}

/// Kills the containerd shim that serves container ID (started by this
/// test's containerd; ID is unique to the test).
fn kill_shim(id: &str) {
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        if is_shim
            && args
                .windows(2)
                .any(|w| w[0] == b"-id" && w[1] == id.as_bytes())
        {
            // SAFETY: kill(2) on a pid just read; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    sleep(Duration::from_millis(500));
}

fn task_pid(c: &Containerd, id: &str) -> Option<i32> {
    let out = c.ctr(&["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .filter(|l| l.split_whitespace().nth(2) == Some("RUNNING"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

fn ctr_ok(c: &Containerd, args: &[&str]) {
    let out = c.ctr(args);
    assert!(
        out.status.success(),
        "ctr {args:?}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
}

/// containerd 1.6 through its runc shim with snaprun as the runc binary:
/// `ctr containers checkpoint --task` (containerd pauses the task, snaprun
/// checkpoints it with --leave-running into containerd's dir, containerd
/// archives it as an image), then the task and container go, and `ctr
/// containers restore --live` brings the counter back, running on.
#[test]
fn containerd_checkpoints_and_restores_through_the_runc_shim() {
    let c = Containerd::start();
    let image = "docker.io/library/snaprun-busybox:test";
    let archive = busybox_image_archive(c.tmp.path(), image);
    ctr_ok(&c, &["images", "import", archive.to_str().unwrap()]);
    let id = oci_support::unique_id("ctrd-ckpt");
    let cgroup = format!("snaprun-test/{id}");
    ctr_ok(
        &c,
        &[
            "run",
            "--detach",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            SNAPRUN,
            "--cgroup",
            &cgroup,
            "--mount",
            "type=tmpfs,src=tmpfs,dst=/run,options=rw:nosuid",
            image,
            &id,
            "sh",
            "-c",
            COUNTER,
        ],
    );
    let pid = wait_for("the task to run", || task_pid(&c, &id));
    let before = counter_at_least(pid, 10);
    let checkpoint = format!("snaprun-checkpoint/{id}:1");
    ctr_ok(
        &c,
        &["containers", "checkpoint", "--task", &id, &checkpoint],
    );
    // Left running, and resumed by containerd.
    counter_at_least(pid, before + 3);
    ctr_ok(&c, &["task", "kill", "--signal", "KILL", &id]);
    wait_for("the task to stop", || {
        task_pid(&c, &id).is_none().then_some(())
    });
    ctr_ok(&c, &["task", "rm", &id]);
    ctr_ok(&c, &["containers", "rm", &id]);

    let out = c.ctr(&["containers", "restore", "--live", &id, &checkpoint]);
    if !out.status.success() {
        // A task whose restore failed never exits, and `ctr task rm -f`
        // (the harness's cleanup) would wait for it forever: end its shim.
        kill_shim(&id);
        panic!(
            "ctr containers restore: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
    }
    let pid = wait_for("the restored task to run", || task_pid(&c, &id));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(nspid.ends_with("\t1"), "{nspid}");
    assert_eq!(read_in(pid, "/run/once").as_deref(), Some("hello\n"));
    sleep(Duration::from_millis(500));
    let after = counter(pid).unwrap();
    assert!(
        after > before,
        "counter {before} -> {after}: it did not go on"
    );
    counter_at_least(pid, after + 3);
    // The shim's pipes are its stdio.
    let stdout = fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
    assert!(
        stdout.to_string_lossy().starts_with("pipe:"),
        "{}",
        stdout.display()
    );
    ctr_ok(&c, &["task", "kill", "--signal", "KILL", &id]);
    wait_for("the restored task to stop", || {
        task_pid(&c, &id).is_none().then_some(())
    });
    ctr_ok(&c, &["task", "rm", &id]);
    assert!(!c.runtime_root().join(&id).exists());
}
