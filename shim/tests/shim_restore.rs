//! Restore-on-create through containerd: the `io.snaprun.*` annotations,
//! the cold fallback, and the event (`/snaprun/restore`) and error that say
//! what happened, for snapshots that cannot be restored (missing, a process
//! snapshot) and malformed annotations. A real container checkpoint
//! restored on create is `shim_restore_python.rs`.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::{close_fds, snaprun, text, unique_id, wait_for, Containerd};

/// `ctr run --rm` of a container that prints a line, with ANNOTATIONS.
fn run_annotated(
    c: &Containerd,
    rootfs: &Path,
    id: &str,
    annotations: &[String],
) -> std::process::Output {
    let cgroup = format!("snaprun-test/{id}");
    let mut flags: Vec<&str> = vec!["--rm"];
    for a in annotations {
        flags.extend(["--annotation", a.as_str()]);
    }
    let args = Containerd::run_args(
        &flags,
        rootfs.to_str().unwrap(),
        id,
        &cgroup,
        &["sh", "-c", "echo cold start ran; exit 0"],
    );
    c.ctr(&args)
}

#[test]
fn missing_snapshot_starts_cold_with_fallback_and_fails_without() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let store = c.tmp.path().join("store");
    std::fs::create_dir(&store).unwrap();
    let events = c.events();
    let store_ann = format!("io.snaprun.store={}", store.display());

    // Fallback: the entrypoint runs, and the event says why.
    let id = unique_id("cold");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &[
            "io.snaprun.snapshot=model:v1".into(),
            store_ann.clone(),
            "io.snaprun.fallback=cold".into(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert!(text(&out).contains("cold start ran"), "{}", text(&out));
    let line = events.wait_line(
        "/snaprun/restore",
        &[&id, "\"io.snaprun.restore\":\"cold\"", "model:v1"],
    );
    assert!(line.contains("io.snaprun.reason"), "{line}");

    // No fallback: create fails, with the reason, and nothing ran.
    let id = unique_id("fail");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &["io.snaprun.snapshot=model:v1".into(), store_ann],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains("cold start ran"), "{all}");
    assert!(all.contains("restore-on-create"), "{all}");
    assert!(all.contains("model:v1"), "{all}");
    assert!(all.contains("io.snaprun.fallback=cold"), "{all}");
    events.wait_line(
        "/snaprun/restore",
        &[
            &id,
            "\"io.snaprun.restore\":\"failed\"",
            "io.snaprun.reason",
        ],
    );
    assert!(!c.runtime_root().join(&id).exists());
}

#[test]
fn bad_annotation_fails_with_a_clear_reason() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let events = c.events();
    let id = unique_id("bad");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &[
            "io.snaprun.snapshot=no-tag-here".into(),
            "io.snaprun.fallback=cold".into(),
        ],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(!all.contains("cold start ran"), "{all}");
    assert!(all.contains("io.snaprun.snapshot=\"no-tag-here\""), "{all}");
    assert!(all.contains("NAME:TAG"), "{all}");
    events.wait_line(
        "/snaprun/restore",
        &[&id, "\"io.snaprun.restore\":\"failed\"", "NAME:TAG"],
    );

    let id = unique_id("badfb");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &[
            "io.snaprun.snapshot=model:v1".into(),
            "io.snaprun.fallback=sometimes".into(),
        ],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("\"sometimes\" is not a fallback"), "{all}");
}

/// A snapshot that is in the store but is a process snapshot, not a
/// container checkpoint: the shim asks snaprun to restore the container,
/// snaprun refuses, and the reason reaches the event (with the fallback) or
/// the error (without).
#[test]
fn a_process_snapshot_is_attempted_and_refused_as_not_a_container_checkpoint() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let store = c.tmp.path().join("store");
    let mut sleeper = close_fds(
        Command::new("/bin/sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .spawn()
    .unwrap();
    let pid = sleeper.id().to_string();
    let out = close_fds(
        Command::new(snaprun())
            .args(["checkpoint", "--pid", &pid, "--to", "model:v1", "--store"])
            .arg(&store),
    )
    .output()
    .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(out.status.success(), "checkpoint: {}", text(&out));

    let events = c.events();
    let store_ann = format!("io.snaprun.store={}", store.display());
    let id = unique_id("present");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &[
            "io.snaprun.snapshot=model:v1".into(),
            store_ann.clone(),
            "io.snaprun.fallback=cold".into(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert!(text(&out).contains("cold start ran"), "{}", text(&out));
    events.wait_line(
        "/snaprun/restore",
        &[
            &id,
            "\"io.snaprun.restore\":\"cold\"",
            "is not a container checkpoint",
        ],
    );

    let id = unique_id("present-nofb");
    let out = run_annotated(
        &c,
        &rootfs,
        &id,
        &["io.snaprun.snapshot=model:v1".into(), store_ann],
    );
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("is not a container checkpoint"), "{all}");
    wait_for("no state left", || {
        (!c.runtime_root().join(&id).exists()).then_some(())
    });
}

/// The shim's options file (`ctr run --runtime-config-path`, CRI's
/// `ConfigPath`) names the snapshot, store and fallback for containers
/// whose annotations do not.
#[test]
fn shim_options_file_gives_the_snapshot_defaults() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let store = c.tmp.path().join("cfg-store");
    std::fs::create_dir(&store).unwrap();
    let config = c.tmp.path().join("shim.toml");
    std::fs::write(
        &config,
        format!(
            "store = \"{}\"\nsnapshot = \"base:v7\"\nfallback = \"cold\"\n",
            store.display()
        ),
    )
    .unwrap();
    let events = c.events();
    let id = unique_id("cfg");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--rm", "--runtime-config-path", config.to_str().unwrap()],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &["sh", "-c", "echo cold start ran"],
    );
    let out = c.ctr(&args);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    assert!(text(&out).contains("cold start ran"), "{}", text(&out));
    let store_text = store.display().to_string();
    events.wait_line(
        "/snaprun/restore",
        &[
            &id,
            "\"io.snaprun.restore\":\"cold\"",
            "base:v7",
            &store_text,
        ],
    );

    // A key the shim does not know is an error, not a silent default.
    std::fs::write(&config, "snapshots = \"base:v7\"\n").unwrap();
    let id = unique_id("cfgbad");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--rm", "--runtime-config-path", config.to_str().unwrap()],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &["true"],
    );
    let out = c.ctr(&args);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("snapshots"), "{}", text(&out));
}
