//! Bad bundles, configs and requests: exit code 1 and an error naming the
//! field (or the container), with nothing left behind.

mod oci_support;

use std::fs;

use oci_support::{assert_fails, Bundle};
use serde_json::json;

/// Creates B's container expecting failure; checks the message and that no
/// state dir is left.
fn create_fails(b: &Bundle, needles: &[&str]) {
    let out = b.cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &b.id]);
    assert_fails(&out, needles);
    assert!(
        !b.root().join(&b.id).exists(),
        "a failed create left its state dir"
    );
}

fn bundle_with(f: impl FnOnce(&mut serde_json::Value)) -> Bundle {
    let mut b = Bundle::new("bad", &["true"]);
    f(&mut b.config);
    b.write_config();
    b
}

#[test]
fn missing_root_path_is_named() {
    let b = bundle_with(|c| c["root"] = json!({"readonly": true}));
    create_fails(&b, &["config.json", "root", "missing field `path`"]);
    let b = bundle_with(|c| c["root"]["path"] = "nowhere".into());
    create_fails(&b, &["root.path", "nowhere", "is not a directory"]);
}

#[test]
fn bad_mount_type_is_named() {
    let b = bundle_with(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}))
    });
    create_fails(&b, &["mounts[7].type", "unknown mount type \"nosuchfs\""]);
    let b = bundle_with(|c| c["mounts"][0]["destination"] = "proc".into());
    create_fails(&b, &["mounts[0].destination", "not an absolute path"]);
}

#[test]
fn unknown_namespace_type_is_named() {
    let b = bundle_with(|c| c["linux"]["namespaces"][2] = json!({"type": "time-travel"}));
    create_fails(
        &b,
        &[
            "linux.namespaces[2].type",
            "unknown namespace type \"time-travel\"",
        ],
    );
}

#[test]
fn bad_json_gives_line_and_column() {
    let b = Bundle::new("badjson", &["true"]);
    fs::write(
        b.dir().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\",}\n}\n",
    )
    .unwrap();
    create_fails(&b, &["config.json", "line 3 column"]);
    let b = bundle_with(|c| c["process"]["user"]["uid"] = "root".into());
    create_fails(&b, &["process.user.uid", "invalid type"]);
}

/// An edit of a config.
type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

#[test]
fn other_bad_fields_are_named() {
    let cases: Vec<(Edit, &[&str])> = vec![
        (
            Box::new(|c| c["process"]["args"] = json!([])),
            &["process.args", "must not be empty"],
        ),
        (
            Box::new(|c| c["process"]["cwd"] = "rel".into()),
            &["process.cwd"],
        ),
        (
            Box::new(|c| c["process"]["capabilities"]["bounding"][1] = "CAP_NOPE".into()),
            &["process.capabilities.bounding[1]", "CAP_NOPE"],
        ),
        (
            Box::new(|c| c["process"]["rlimits"][0]["type"] = "RLIMIT_NOPE".into()),
            &["process.rlimits[0].type"],
        ),
        (
            Box::new(|c| c["ociVersion"] = "2.0.0".into()),
            &["ociVersion"],
        ),
        (
            Box::new(|c| {
                c["linux"]["namespaces"] = json!([{"type": "mount"}]);
            }),
            &["hostname", "uts namespace"],
        ),
        (
            Box::new(|c| c["hooks"] = json!({"poststop": [{"path": "rel/hook"}]})),
            &["hooks.poststop[0].path"],
        ),
        (
            Box::new(|c| c["process"]["terminal"] = true.into()),
            &["process.terminal", "--console-socket"],
        ),
    ];
    for (edit, needles) in cases {
        let b = bundle_with(edit);
        create_fails(&b, needles);
    }
}

#[test]
fn a_missing_executable_fails_create() {
    let b = Bundle::new("noexe", &["no-such-program"]);
    b.write_config();
    create_fails(
        &b,
        &["executable file not found in $PATH", "no-such-program"],
    );
}

#[test]
fn missing_bundle_and_config() {
    let b = Bundle::new("nocfg", &["true"]);
    fs::remove_file(b.dir().join("config.json")).unwrap();
    create_fails(&b, &["read the config", "config.json"]);
    let out = b.cmd(&["create", "--bundle", "/nonexistent-bundle", &b.id]);
    assert_fails(&out, &["/nonexistent-bundle"]);
}

#[test]
fn ids_and_unknown_containers() {
    let b = Bundle::new("ids", &["sleep", "100"]);
    b.write_config();
    let out = b.cmd(&["create", "--bundle", b.dir().to_str().unwrap(), "a/b"]);
    assert_fails(&out, &["invalid container id format"]);
    for verb in ["state", "start", "kill", "delete", "pause", "resume", "ps"] {
        assert_fails(
            &b.cmd(&[verb, "nosuch"]),
            &["container does not exist: nosuch"],
        );
    }
    b.create();
    let out = b.cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &b.id]);
    assert_fails(&out, &[&format!("container with id exists: {}", b.id)]);
    assert_fails(
        &b.cmd(&["exec", &b.id, "true"]),
        &["cannot exec in a created container"],
    );
}

#[test]
fn container_checkpoint_forms_parse_runcs_flags() {
    let b = Bundle::new("ckpt", &["true"]);
    let img = b.tmp.path().join("img");
    let img = img.to_str().unwrap();
    // containerd's runc calls parse and reach the container form (the
    // container and the image are missing here; oci_checkpoint.rs has the
    // real thing).
    let out = b.cmd(&[
        "checkpoint",
        "--image-path",
        img,
        "--work-path",
        "/tmp/work",
        "--leave-running",
        "--tcp-established",
        "--manage-cgroups-mode",
        "soft",
        "some-container",
    ]);
    assert_fails(&out, &["container does not exist: some-container"]);
    let out = b.cmd(&[
        "restore",
        "--image-path",
        img,
        "--work-path",
        "/tmp/work",
        "--bundle",
        "/tmp",
        "--detach",
        "--pid-file",
        "/tmp/p",
        "--no-subreaper",
        "some-container",
    ]);
    assert_fails(&out, &[img, "not a snapshot"]);
    // The process forms refuse the container-only flags.
    let out = b.cmd(&[
        "checkpoint",
        "--pid",
        "1",
        "--image-path",
        "/tmp/img",
        "--work-path",
        "/w",
    ]);
    assert_fails(&out, &["--work-path applies to a container checkpoint"]);
    let out = b.cmd(&["restore", "--image-path", "/tmp/img", "--bundle", "/tmp"]);
    assert_fails(&out, &["--bundle applies to a container restore"]);
}

#[test]
fn the_json_log_holds_the_error_for_containerd() {
    let b = bundle_with(|c| c["root"]["path"] = "nowhere".into());
    let log = b.tmp.path().join("log.json");
    let out = b.cmd(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.dir().to_str().unwrap(),
        &b.id,
    ]);
    assert_fails(&out, &["root.path"]);
    let text = fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"].as_str().unwrap().contains("root.path"),
        "{text}"
    );
    assert!(last["time"].as_str().unwrap().ends_with('Z'), "{text}");
}

#[test]
fn bad_seccomp_fields_are_named() {
    let b = bundle_with(|c| {
        c["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_SOMETIMES"}]})
    });
    create_fails(
        &b,
        &["linux.seccomp.syscalls[0].action", "SCMP_ACT_SOMETIMES"],
    );
    let b = bundle_with(|c| c["linux"]["seccomp"] = json!({"syscalls": []}));
    create_fails(&b, &["linux.seccomp", "missing field `defaultAction`"]);
}
