//! containerd 1.6 runs busybox containers through the shim
//! (`--runtime io.containerd.snaprun.v1`): run with output and exit code,
//! stdin, then exec, ps, pause/resume, metrics, kill and delete via `ctr`.

mod support;

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use support::{text, unique_id, wait_for, Containerd};

#[test]
fn ctr_run_returns_output_and_exit_code_and_publishes_events() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let events = c.events();
    let id = unique_id("run");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--rm"],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &["sh", "-c", "echo hello from $$; echo to stderr >&2; exit 3"],
    );
    let out = c.ctr(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}\n{}", c.log());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from 1"),
        "{all}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to stderr"),
        "{all}"
    );
    // The shim deleted the container: snaprun's state for it is gone.
    assert!(!c.runtime_root().join(&id).exists());
    assert!(c.ctr(&["containers", "ls", "-q"]).stdout.is_empty());

    // The task's events, from the shim, in order.
    let ctid = format!("\"container_id\":\"{id}\"");
    let create = events.wait_line("/tasks/create", &[&ctid]);
    let start = events.wait_line("/tasks/start", &[&ctid]);
    let exit = events.wait_line("/tasks/exit", &[&ctid, "\"exit_status\":3"]);
    let delete = events.wait_line("/tasks/delete", &[&ctid, "\"exit_status\":3"]);
    let all = events.text();
    let at = |l: &str| all.find(l).unwrap();
    assert!(
        at(&create) < at(&start) && at(&start) < at(&exit) && at(&exit) < at(&delete),
        "{all}"
    );
}

#[test]
fn ctr_run_feeds_stdin_until_it_closes() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let id = unique_id("stdin");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--rm"],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &["sh", "-c", "tr a-z A-Z; echo done"],
    );
    let mut cmd = c.ctr_cmd(&args);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"shout this\n").unwrap();
    // End of input: ctr closes the task's stdin (CloseIO), tr ends.
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}\n{}", c.log());
    assert!(all.contains("SHOUT THIS\ndone"), "{all}");
}

#[test]
fn ctr_task_exec_ps_pause_resume_metrics_kill_delete() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let id = unique_id("task");
    let cgroup = format!("snaprun-test/{id}");
    let args = Containerd::run_args(
        &["--detach"],
        rootfs.to_str().unwrap(),
        &id,
        &cgroup,
        &[
            "sh",
            "-c",
            "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done",
        ],
    );
    let out = c.ctr(&args);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    wait_for("task running", || {
        (c.task_status(&id) == "RUNNING").then_some(())
    });

    // snaprun (through the shim) keeps this container's state.
    let state = fs::read_to_string(c.runtime_root().join(&id).join("state.json")).unwrap();
    assert!(state.contains("\"start_time\""), "{state}");

    let count = || -> u64 {
        fs::read_to_string(rootfs.join("tmp/count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_for("the counter", || (count() > 2).then_some(()));

    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "echo exec in $(cat /proc/1/cmdline | tr '\\0' ' '); exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}\n{}", text(&out), c.log());
    assert!(text(&out).contains("exec in sh -c i=0"), "{}", text(&out));

    // Execs that end at once (often before the shim read their pid).
    for n in 0..5 {
        let code = 10 + n;
        let out = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            &format!("quick{n}"),
            &id,
            "sh",
            "-c",
            &format!("exit {code}"),
        ]);
        assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    }

    // A long exec shows in `ctr task ps` with its exec id.
    let mut sleeper = c
        .ctr_cmd(&["task", "exec", "--exec-id", "sleeper", &id, "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ls = String::from_utf8_lossy(&c.ctr(&["task", "ls"]).stdout).into_owned();
    let init = ls
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    let ps = wait_for("the exec in ctr task ps", || {
        let ps = text(&c.ctr(&["task", "ps", &id]));
        ps.contains("sleeper").then_some(ps)
    });
    let pids: Vec<&str> = ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(pids.contains(&init.as_str()), "init {init} not in {ps}");

    let out = c.ctr(&["task", "kill", "--exec-id", "sleeper", "-s", "TERM", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let st = wait_for("the exec to end", || sleeper.try_wait().unwrap());
    assert_eq!(st.code(), Some(128 + 15), "exec status {st}");

    let out = c.ctr(&["task", "metrics", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("memory.usage_in_bytes"),
        "{}",
        text(&out)
    );

    let out = c.ctr(&["task", "pause", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.task_status(&id), "PAUSED");
    let frozen = count();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(), frozen, "the counter moved while paused");
    let out = c.ctr(&["task", "resume", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(c.task_status(&id), "RUNNING");
    wait_for("the counter after resume", || {
        (count() > frozen).then_some(())
    });

    let out = c.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("task stopped", || {
        (c.task_status(&id) == "STOPPED").then_some(())
    });
    let out = c.ctr(&["task", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.ctr(&["containers", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!c.runtime_root().join(&id).exists());
}

/// `ctr run -t`: the process gets a pty (its master reaches the shim over
/// the console socket) sized by ResizePty; `script` gives ctr a terminal.
#[test]
fn ctr_run_with_a_terminal() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let id = unique_id("tty");
    let cgroup = format!("snaprun-test/{id}");
    let script = "tty; for i in $(seq 100); do s=$(stty size 2>/dev/null); [ -n \"$s\" ] && break; sleep 0.05; done; echo size=$s; exit 5";
    let line = format!(
        "stty rows 40 cols 100; /usr/bin/ctr --address {} --namespace {} run -t --rm --runtime {} --cgroup {cgroup} --rootfs {} {id} sh -c '{script}'",
        c.socket().display(),
        c.namespace,
        support::RUNTIME,
        rootfs.display(),
    );
    let mut cmd = std::process::Command::new("/usr/bin/script");
    cmd.args(["-qec", &line, "/dev/null"]).stdin(Stdio::null());
    let out = support::close_fds(&mut cmd).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}\n{}", c.log());
    assert!(all.contains("/dev/pts/0"), "{all}");
    // ctr resizes once the task started: the size arrives a moment later.
    assert!(all.contains("size=40 100"), "{all}");
}

/// An image run (not `--rootfs`): containerd's snapshotter hands the shim
/// the rootfs as overlay mounts, which the shim mounts in the bundle (and
/// it, or containerd after it, unmounts on delete).
#[test]
fn ctr_run_of_an_imported_image_mounts_its_layers() {
    let c = Containerd::start();
    let rootfs = c.rootfs("rootfs");
    let archive = c.tmp.path().join("image.tar");
    support::image::oci_archive(&rootfs, "snaprun.test/busybox:1", c.tmp.path(), &archive);
    let out = c.ctr(&["image", "import", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let id = unique_id("image");
    let cgroup = format!("snaprun-test/{id}");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        support::RUNTIME,
        "--cgroup",
        &cgroup,
        "snaprun.test/busybox:1",
        &id,
        "sh",
        "-c",
        "echo written > /tmp/new; cat /tmp/new; grep ' / ' /proc/mounts",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}\n{}", c.log());
    assert!(all.contains("written"), "{all}");
    assert!(all.contains(" / overlay "), "{all}");
    // The layer is untouched; the write went to the container's own layer.
    assert!(!rootfs.join("tmp/new").exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "a mount of {id} is left:\n{mounts}");
}
