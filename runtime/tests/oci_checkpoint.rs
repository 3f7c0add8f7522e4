//! Container checkpoint and restore through the real binary: a busybox
//! container counting in a shell loop into a file on a tmpfs mount is
//! checkpointed (image dir, or the store) and restored from its bundle,
//! and must go on counting from where it was; `state`, `ps`, `kill` and
//! `delete` work on the restored container; errors name what is wrong.

mod ckpt_support;
mod oci_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::Duration;

use ckpt_support::{counter, counter_at_least, read_in, COUNTER};
use oci_support::{assert_fails, close_fds, Bundle};
use serde_json::{json, Value};

/// A bundle running `sh -c SCRIPT` with a tmpfs at /run.
fn bundle(name: &str, script: &str) -> Bundle {
    let mut b = Bundle::new(name, &["sh", "-c", script]);
    fs::create_dir_all(b.rootfs().join("run")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/run",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=755"]
    }));
    b.write_config();
    b
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Creates and starts the container with /dev/null as its stdio.
fn start(b: &Bundle) -> i32 {
    let bundle = b.dir();
    ok(
        &b.cmd_detached(&["create", "--bundle", bundle.to_str().unwrap(), &b.id]),
        "create",
    );
    b.ok("start");
    init_pid(b)
}

fn init_pid(b: &Bundle) -> i32 {
    b.state()["pid"].as_i64().unwrap() as i32
}

/// After a restore: the container runs again as pid 1 of its namespace,
/// its tmpfs holds what it held, and its counter goes on from where it
/// was (at least `before`) rather than from 0.
fn check_restored(b: &Bundle, before: u64) -> i32 {
    check_restored_creds(b, before, None)
}

/// The credentials lines of /proc/PID/status that the container's config
/// decides (ids, groups, capability sets, no_new_privs, seccomp).
fn creds(pid: i32) -> Vec<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let keys = [
        "Uid:",
        "Gid:",
        "Groups:",
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
    ];
    status
        .lines()
        .filter(|l| keys.iter().any(|k| l.starts_with(k)))
        .map(str::to_string)
        .collect()
}

/// As `check_restored`, and the restored init has the credentials the
/// source had (`want`), not the runtime's.
fn check_restored_creds(b: &Bundle, before: u64, want: Option<&[String]>) -> i32 {
    let st = b.state();
    assert_eq!(st["status"], "running", "{st}");
    let pid = init_pid(b);
    if let Some(want) = want {
        assert_eq!(creds(pid), want, "the restored init's credentials");
    }
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.ends_with("\t1"),
        "the restored init is not pid 1 inside: {nspid}"
    );
    assert_eq!(
        read_in(pid, "/run/once").as_deref(),
        Some("hello\n"),
        "the tmpfs file written before the checkpoint is gone"
    );
    // The restored tmpfs holds the last value written; a restarted loop
    // would overwrite it with 1, 2, 3... Give the loop 0.5 s (5 rounds).
    sleep(Duration::from_millis(500));
    let after = counter(pid).unwrap();
    assert!(
        after > before,
        "the counter went from {before} to {after}: the loop did not continue"
    );
    let later = counter_at_least(pid, after + 3);
    assert!(later > after);
    let ps: Vec<i32> = serde_json::from_str(&b.ok_args(&["ps", "--format", "json"])).unwrap();
    assert!(ps.contains(&pid), "ps {ps:?} lacks the init {pid}");
    // exec joins the restored container's namespaces.
    let out = b.cmd(&["exec", &b.id, "cat", "/run/once"]);
    ok(&out, "exec");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    pid
}

fn kill_and_delete(b: &Bundle) {
    ok(&b.cmd(&["kill", &b.id, "KILL"]), "kill");
    b.wait_status("stopped");
    b.ok("delete");
    assert_fails(&b.cmd(&["state", &b.id]), &["container does not exist"]);
}

fn image_dir(b: &Bundle) -> PathBuf {
    b.tmp.path().join("image")
}

#[test]
fn a_counting_container_goes_on_after_restore_from_an_image_dir() {
    let b = bundle("ckpt-dir", COUNTER);
    let pid = start(&b);
    let before = counter_at_least(pid, 10);
    let source_creds = creds(pid);
    // The bundle's default config drops most capabilities: a restore that
    // left the runtime's (this test's, root's) would show as a difference.
    let cap_eff = |c: &[String]| c.iter().find(|l| l.starts_with("CapEff:")).cloned();
    assert_ne!(
        cap_eff(&source_creds),
        cap_eff(&creds(std::process::id() as i32)),
        "the container runs with the test's own capabilities"
    );
    let img = image_dir(&b);
    let out = b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]);
    ok(&out, "checkpoint");
    assert!(img.join("manifest.json").exists());
    // As runc: the checkpointed container is gone.
    assert_fails(&b.cmd(&["state", &b.id]), &["container does not exist"]);
    assert!(!Path::new(&format!("/proc/{pid}/root/run")).exists());

    let bundle_dir = b.dir();
    let out = b.cmd_detached(&[
        "restore",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        bundle_dir.to_str().unwrap(),
        "--detach",
        &b.id,
    ]);
    ok(&out, "restore");
    let pid = check_restored_creds(&b, before, Some(&source_creds));
    // pause and resume: the freezer holds the restored processes.
    b.ok("pause");
    assert_eq!(b.status(), "paused");
    let held = counter(pid).unwrap();
    sleep(Duration::from_millis(400));
    assert!(counter(pid).unwrap() <= held + 1, "counting while paused");
    b.ok("resume");
    counter_at_least(pid, held + 3);
    kill_and_delete(&b);
}

/// Checkpointed `--leave-running` into the store, then restored from it
/// lazily: the pager serves the container's memory and brings it all in.
#[test]
fn leave_running_then_lazy_restore_from_the_store() {
    let b = bundle("ckpt-store", COUNTER);
    let pid = start(&b);
    let before = counter_at_least(pid, 10);
    let store = b.tmp.path().join("store");
    let name = "counter:v1";
    let out = b.cmd(&[
        "checkpoint",
        "--to",
        name,
        "--store",
        store.to_str().unwrap(),
        "--leave-running",
        &b.id,
    ]);
    ok(&out, "checkpoint --leave-running");
    // Still there and still counting.
    assert_eq!(b.status(), "running");
    counter_at_least(pid, before + 3);
    ok(&b.cmd(&["delete", "--force", &b.id]), "delete --force");

    let bundle_dir = b.dir();
    let stats = b.tmp.path().join("pager.json");
    let out = b.cmd_detached(&[
        "restore",
        "--from",
        name,
        "--store",
        store.to_str().unwrap(),
        "--lazy",
        "--pager-stats",
        stats.to_str().unwrap(),
        "--bundle",
        bundle_dir.to_str().unwrap(),
        "--detach",
        &b.id,
    ]);
    ok(&out, "restore --from --lazy");
    check_restored(&b, before);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let figures: Value = loop {
        let v: Option<Value> = fs::read_to_string(&stats)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        match v {
            Some(v) if v["done"] == true => break v,
            _ => {}
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the pager did not finish: {}",
            fs::read_to_string(&stats).unwrap_or_default()
        );
        sleep(Duration::from_millis(50));
    };
    assert!(figures["lazy_bytes"].as_u64().unwrap() > 0, "{figures}");
    assert!(figures["error"].is_null(), "{figures}");
    // The shell, and the `sleep` it may have been waiting for.
    assert!(figures["processes"].as_u64().unwrap() >= 1, "{figures}");
    kill_and_delete(&b);
}

#[test]
fn a_foreground_restore_waits_and_exits_with_the_containers_code() {
    // Counts to 40 (about 4 s), then exits 7.
    let script =
        "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done; exit 7";
    let b = bundle("ckpt-fg", script);
    let pid = start(&b);
    let before = counter_at_least(pid, 5);
    let img = image_dir(&b);
    ok(
        &b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]),
        "checkpoint",
    );
    let bundle_dir = b.dir();
    let started = std::time::Instant::now();
    let out = b.cmd_detached(&[
        "restore",
        "--image-path",
        img.to_str().unwrap(),
        "--bundle",
        bundle_dir.to_str().unwrap(),
        &b.id,
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It went on from `before`, so it needed less than the whole 4 s.
    let took = started.elapsed();
    let left = Duration::from_millis(100 * (40 - before));
    assert!(
        took < left + Duration::from_secs(3),
        "took {took:?} for {left:?} of counting left"
    );
    // Deleted once it exited, as after `run`.
    assert_fails(&b.cmd(&["state", &b.id]), &["container does not exist"]);
}

#[test]
fn errors_name_the_missing_image_the_state_and_the_execd_process() {
    let b = bundle("ckpt-err", COUNTER);
    let bundle_dir = b.dir();
    let bundle_dir = bundle_dir.to_str().unwrap();
    let missing = b.tmp.path().join("no-such-image");
    let out = b.cmd(&[
        "restore",
        "--image-path",
        missing.to_str().unwrap(),
        "--bundle",
        bundle_dir,
        "--detach",
        &b.id,
    ]);
    assert_fails(&out, &[missing.to_str().unwrap(), "not a snapshot"]);
    assert_fails(
        &b.cmd(&["checkpoint", "no-such-container"]),
        &["container does not exist: no-such-container"],
    );

    // Created, not started: not running.
    ok(
        &b.cmd_detached(&["create", "--bundle", bundle_dir, &b.id]),
        "create",
    );
    let img = image_dir(&b);
    let out = b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]);
    assert_fails(&out, &[&b.id, "is created", "container not running"]);
    b.ok("start");
    let pid = init_pid(&b);
    let before = counter_at_least(pid, 3);

    // A process started by exec is outside the init's tree: refused, and
    // the container runs on untouched.
    let exec_pid = b.tmp.path().join("exec.pid");
    ok(
        &b.cmd_detached(&[
            "exec",
            "--detach",
            "--pid-file",
            exec_pid.to_str().unwrap(),
            &b.id,
            "sleep",
            "1000",
        ]),
        "exec",
    );
    let sleeper = fs::read_to_string(&exec_pid).unwrap();
    let out = b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]);
    assert_fails(
        &out,
        &[
            "processes outside its init's process tree",
            sleeper.trim(),
            "snaprun exec",
        ],
    );
    assert_eq!(b.status(), "running");
    counter_at_least(pid, before + 3);
    assert!(!img.join("manifest.json").exists());

    // A snapshot of a plain process is not a container checkpoint.
    let plain = b.tmp.path().join("plain");
    let mut sleep_cmd = Command::new("sleep");
    sleep_cmd
        .arg("1000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = close_fds(&mut sleep_cmd).spawn().unwrap();
    let child_pid = child.id().to_string();
    ok(
        &b.cmd(&[
            "checkpoint",
            "--pid",
            &child_pid,
            "--image-path",
            plain.to_str().unwrap(),
        ]),
        "checkpoint --pid",
    );
    let _ = child.wait();
    let out = b.cmd(&[
        "restore",
        "--image-path",
        plain.to_str().unwrap(),
        "--bundle",
        bundle_dir,
        "--detach",
        "other-id",
    ]);
    assert_fails(&out, &["is not a container checkpoint"]);
}

/// The snapshot records the ids of the container's PID namespace: the
/// init is pid 1 with parent 0, its child has its inner pid.
#[test]
fn the_snapshot_holds_the_containers_own_ids() {
    let b = bundle("ckpt-ids", COUNTER);
    let pid = start(&b);
    counter_at_least(pid, 3);
    let img = image_dir(&b);
    ok(
        &b.cmd(&[
            "checkpoint",
            "--image-path",
            img.to_str().unwrap(),
            "--leave-running",
            &b.id,
        ]),
        "checkpoint",
    );
    let m: Value = serde_json::from_slice(&fs::read(img.join("manifest.json")).unwrap()).unwrap();
    let procs = m["manifest"]["processes"].as_array().unwrap();
    assert_eq!(procs[0]["pid"], 1);
    assert_eq!(procs[0]["ppid"], 0);
    assert_eq!(procs[0]["sid"], 1);
    for p in &procs[1..] {
        assert_eq!(p["ppid"], 1, "{}", p["pid"]);
        assert!(
            p["pid"].as_i64().unwrap() < 1000,
            "a host pid: {}",
            p["pid"]
        );
    }
    let att = &m["manifest"]["attachments"][0];
    assert_eq!(att["name"], "oci.container");
    let mounts: Vec<&str> = att["meta"]["tmpfs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["destination"].as_str().unwrap())
        .collect();
    assert!(mounts.contains(&"/run"), "{mounts:?}");
    assert_eq!(att["meta"]["rootfs_writable"], true);
}

/// A container with a user namespace is refused before anything is frozen.
#[test]
fn a_container_with_a_user_namespace_is_refused() {
    let mut b = bundle("ckpt-userns", COUNTER);
    // The mapped root must reach the rootfs.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(b.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let c = &mut b.config;
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.write_config();
    let pid = start(&b);
    counter_at_least(pid, 2);
    let img = image_dir(&b);
    let out = b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]);
    assert_fails(&out, &[&b.id, "user namespace"]);
    assert_eq!(b.status(), "running");
}

/// A process under a seccomp filter is refused (the engine cannot restore
/// filters yet), naming the pid; the container runs on.
#[test]
fn a_container_under_seccomp_is_refused() {
    let mut b = bundle("ckpt-seccomp", COUNTER);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    b.write_config();
    let pid = start(&b);
    let before = counter_at_least(pid, 3);
    let img = image_dir(&b);
    let out = b.cmd(&["checkpoint", "--image-path", img.to_str().unwrap(), &b.id]);
    assert_fails(&out, &[&format!("pid {pid}"), "seccomp filter"]);
    assert_eq!(b.status(), "running");
    counter_at_least(pid, before + 3);
}
