//! The Python inference server (`tests/workloads/inference_server/`) in a
//! busybox container, checkpointed and restored as a container: it must
//! answer with the same embeddings, its request counter going on, its
//! heartbeat thread ticking again, and its log (the stdio it redirected)
//! still written. The venv, the interpreter's prefix and /usr come from the
//! host, bind-mounted read-only; the container shares the host's network
//! so the test can reach the server on loopback.

mod common;
mod oci_support;
mod workload;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_support::{wait_for, Bundle};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bind(path: &Path, dest: &str, ro: bool) -> Value {
    let mode = if ro { "ro" } else { "rw" };
    json!({"destination": dest, "type": "bind", "source": path, "options": ["rbind", mode]})
}

/// The interpreter's prefix, from the venv's pyvenv.cfg (`home = PREFIX/bin`).
fn python_prefix(venv: &Path) -> PathBuf {
    let cfg = fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let home = cfg
        .lines()
        .find_map(|l| l.strip_prefix("home = "))
        .expect("home in pyvenv.cfg");
    Path::new(home.trim()).parent().unwrap().to_path_buf()
}

/// Runs `snaprun --root ROOT ARGS` detached from our stdio (the
/// container outlives it); panics on failure with its stderr.
fn snaprun(b: &Bundle, args: &[&str]) {
    let out = b.cmd_detached(args);
    assert!(
        out.status.success(),
        "snaprun {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ready_port(out: &Path) -> u16 {
    let v: Value = wait_for("the server's ready file", || {
        serde_json::from_str(&fs::read_to_string(out.join("ready.json")).ok()?).ok()
    });
    v["port"].as_u64().unwrap() as u16
}

#[test]
fn the_inference_server_in_a_container_goes_on_after_restore() {
    let python = workload::python();
    let venv = python.parent().unwrap().parent().unwrap().to_path_buf();
    let prefix = python_prefix(&venv);
    let app = repo()
        .join("tests/workloads/inference_server")
        .canonicalize()
        .unwrap();
    let mut b = Bundle::new(
        "py",
        &[
            python.to_str().unwrap(),
            "/app/server.py",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            "/out/ready.json",
            "--log",
            "/out/server.log",
            "--blas-threads",
            "2",
        ],
    );
    let out = b.tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    // /usr from the host; /lib and /lib64 as on Debian (merged /usr).
    let rootfs = b.rootfs();
    std::os::unix::fs::symlink("usr/lib", rootfs.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", rootfs.join("lib64")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(bind(Path::new("/usr"), "/usr", true));
    if !prefix.starts_with("/usr") {
        mounts.push(bind(&prefix, prefix.to_str().unwrap(), true));
    }
    mounts.push(bind(&venv, venv.to_str().unwrap(), true));
    mounts.push(bind(&app, "/app", true));
    mounts.push(bind(&out, "/out", false));
    // The host's network: the test talks to the server on loopback.
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "network");
    b.write_config();

    let bundle = b.dir();
    snaprun(&b, &["create", "--bundle", bundle.to_str().unwrap(), &b.id]);
    snaprun(&b, &["start", &b.id]);
    let port = ready_port(&out);
    let texts = ["a restored container", "warm inference"];
    let first = workload::wait_embed(port, &texts, Duration::from_secs(30)).unwrap();
    let second = workload::embed(port, &texts).unwrap();
    assert_eq!(second.count, first.count + 1);
    assert_eq!(second.vectors, first.vectors);
    let h = workload::health(port).unwrap();
    assert_eq!(h["pid"], 1, "the server is the container's init: {h}");

    let img = b.tmp.path().join("image");
    snaprun(
        &b,
        &["checkpoint", "--image-path", img.to_str().unwrap(), &b.id],
    );
    assert!(workload::health(port).is_err(), "the source still answers");
    snaprun(
        &b,
        &[
            "restore",
            "--image-path",
            img.to_str().unwrap(),
            "--bundle",
            bundle.to_str().unwrap(),
            "--detach",
            &b.id,
        ],
    );
    let third = workload::wait_embed(port, &texts, Duration::from_secs(10)).unwrap();
    assert_eq!(
        third.count,
        second.count + 1,
        "the request counter did not go on"
    );
    assert_eq!(
        third.vectors, first.vectors,
        "another embedding after restore"
    );
    let beats = workload::health(port).unwrap()["heartbeats"]
        .as_u64()
        .unwrap();
    wait_for("the heartbeat thread to tick again", || {
        let now = workload::health(port).ok()?["heartbeats"].as_u64()?;
        (now > beats + 2).then_some(())
    });
    // Its stdio was redirected to /out/server.log: that, not the restore
    // command's stdio, is what it writes to.
    let init = b.state()["pid"].as_i64().unwrap();
    let stdout = fs::read_link(format!("/proc/{init}/fd/1")).unwrap();
    assert!(
        stdout.to_string_lossy().ends_with("/out/server.log"),
        "fd 1 is {}",
        stdout.display()
    );
    let ok = b.cmd(&["kill", &b.id, "KILL"]);
    assert!(ok.status.success());
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
}
