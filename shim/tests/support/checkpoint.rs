//! What the checkpoint tests need beside the harness: a busybox image with
//! a `/run` to mount a tmpfs on, a container counting into that tmpfs, the
//! shim's task service for requests `ctr` cannot make, and a containerd
//! checkpoint image made from a checkpoint directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::{Client, TaskClient};
use serde_json::json;

use super::{text, wait_for, Containerd, RUNTIME};

/// Counts into /run/counter (a tmpfs) every 0.1 s; /run/once is written
/// once, before the loop, so it exists only in the tmpfs.
pub const COUNTER: &str = "echo hello > /run/once; i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done";

/// The busybox image the tests run (imported by [`import_busybox`]).
pub const IMAGE: &str = "docker.io/library/snaprun-shim-ckpt:test";
/// The media types of containerd 1.6's checkpoint images.
pub const CHECKPOINT_TAR: &str = "application/vnd.containerd.container.criu.checkpoint.criu.tar";
pub const CHECKPOINT_CONFIG: &str =
    "application/vnd.containerd.container.checkpoint.config.v1+proto";

/// `ctr ARGS`, which must succeed; its stdout and stderr.
pub fn ctr_ok(c: &Containerd, args: &[&str]) -> String {
    let out = c.ctr(args);
    assert!(
        out.status.success(),
        "ctr {args:?}: {}\n{}",
        text(&out),
        c.log()
    );
    text(&out)
}

/// Imports [`IMAGE`]: busybox with an empty `/run`.
pub fn import_busybox(c: &Containerd) {
    let work = c.tmp.path().join("image");
    fs::create_dir_all(&work).unwrap();
    let rootfs = work.join("rootfs");
    super::busybox_rootfs(&rootfs);
    fs::create_dir_all(rootfs.join("run")).unwrap();
    let archive = work.join("image.tar");
    super::image::oci_archive(&rootfs, IMAGE, &work, &archive);
    ctr_ok(c, &["images", "import", archive.to_str().unwrap()]);
}

/// `ctr run --detach` of the counting container ID from [`IMAGE`] with a
/// tmpfs on /run, through the shim.
pub fn run_counter(c: &Containerd, id: &str) -> i32 {
    run_image(c, id, &["sh", "-c", COUNTER])
}

/// `ctr run --detach` of ARGS in container ID from [`IMAGE`] with a tmpfs
/// on /run; the init's pid once it runs.
pub fn run_image(c: &Containerd, id: &str, args: &[&str]) -> i32 {
    let cgroup = format!("snaprun-test/{id}");
    let mut v = vec![
        "run",
        "--detach",
        "--runtime",
        RUNTIME,
        "--cgroup",
        &cgroup,
        "--mount",
        "type=tmpfs,src=tmpfs,dst=/run,options=rw:nosuid",
        IMAGE,
        id,
    ];
    v.extend_from_slice(args);
    ctr_ok(c, &v);
    wait_for(&format!("task {id} to run"), || task_pid(c, id))
}

/// The pid `ctr task ls` shows for a RUNNING task ID.
pub fn task_pid(c: &Containerd, id: &str) -> Option<i32> {
    let out = c.ctr(&["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .filter(|l| l.split_whitespace().nth(2) == Some("RUNNING"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// A file of the container, read from the host through its init's root.
pub fn read_in(pid: i32, path: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/root{path}")).ok()
}

pub fn counter(pid: i32) -> Option<u64> {
    read_in(pid, "/run/counter")?.trim().parse().ok()
}

/// Waits until the container's counter is at least N; returns it.
pub fn counter_at_least(pid: i32, n: u64) -> u64 {
    wait_for(&format!("the counter of pid {pid} to reach {n}"), || {
        counter(pid).filter(|&v| v >= n)
    })
}

/// The pid of PID in its own pid namespace (the last `NSpid` entry).
pub fn ns_pid(pid: i32) -> String {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace().last().unwrap().to_string()
}

/// Container ID's bundle (containerd's task state dir).
pub fn bundle(c: &Containerd, id: &str) -> PathBuf {
    c.tmp
        .path()
        .join("state/io.containerd.runtime.v2.task")
        .join(&c.namespace)
        .join(id)
}

/// The task service of the shim that serves container ID, as containerd
/// reaches it.
pub fn shim_client(c: &Containerd, id: &str) -> TaskClient {
    let address = fs::read_to_string(bundle(c, id).join("address")).unwrap();
    TaskClient::new(Client::connect(address.trim()).unwrap())
}

/// A deadline for one request to the shim.
pub fn ctx() -> containerd_shim_protos::ttrpc::context::Context {
    containerd_shim_protos::ttrpc::context::with_duration(Duration::from_secs(60))
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Moves FILE into LAYOUT/blobs/sha256 under its digest; its descriptor.
fn blob(layout: &Path, file: &Path, media_type: &str) -> serde_json::Value {
    let hex = sha256(file);
    let size = fs::metadata(file).unwrap().len();
    fs::rename(file, layout.join("blobs/sha256").join(&hex)).unwrap();
    json!({
        "mediaType": media_type,
        "digest": format!("sha256:{hex}"),
        "size": size,
        "platform": {"architecture": "amd64", "os": "linux"},
    })
}

/// A containerd checkpoint image of container ID, as `ctr containers
/// checkpoint --task` writes one, made from the checkpoint directory
/// CHECKPOINT (the task) and the container's SPEC (its bundle's
/// config.json): an index naming the image, runtime and snapshotter, with
/// the directory's tar and the spec. Imported as REF (`ctr images import
/// --index-name`), so that `ctr containers restore --live ID REF` works.
pub fn import_checkpoint(c: &Containerd, checkpoint: &Path, spec: &[u8], reference: &str) {
    let name: String = reference
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
        .collect();
    let work = c.tmp.path().join(format!("ckimage-{name}"));
    let layout = work.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let tar = work.join("checkpoint.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(checkpoint)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of {}", checkpoint.display());
    let tar = blob(&layout, &tar, CHECKPOINT_TAR);
    // containerd keeps a container's spec as a protobuf Any.
    let any = Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: spec.to_vec(),
        ..Default::default()
    };
    let config = work.join("spec");
    fs::write(&config, any.write_to_bytes().unwrap()).unwrap();
    let config = blob(&layout, &config, CHECKPOINT_CONFIG);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [tar, config],
        "annotations": {
            "org.opencontainers.image.ref.name": IMAGE,
            "io.containerd.checkpoint.runtime": RUNTIME,
            "io.containerd.checkpoint.snapshotter": "overlayfs",
        },
    });
    fs::write(layout.join("index.json"), index.to_string()).unwrap();
    fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let archive = work.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .unwrap();
    assert!(st.success(), "tar of the checkpoint image layout");
    ctr_ok(
        c,
        &[
            "images",
            "import",
            "--no-unpack",
            "--index-name",
            reference,
            archive.to_str().unwrap(),
        ],
    );
}
