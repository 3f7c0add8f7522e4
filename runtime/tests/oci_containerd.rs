//! containerd 1.6 runs busybox containers through its runc shim
//! (io.containerd.runc.v2) with snaprun as the shim's runc binary: run with
//! output and exit code, then exec, ps, pause/resume and kill via `ctr`.

mod oci_support;

use std::fs;
use std::path::Path;

use oci_support::containerd::Containerd;
use oci_support::{busybox_rootfs, unique_id, wait_for};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn task_status(c: &Containerd, id: &str) -> String {
    let out = c.ctr(&["task", "ls"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("")
        .to_string()
}

#[test]
fn ctr_run_goes_through_snaprun() {
    let c = Containerd::start();
    let rootfs = c.tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let id = unique_id("run");
    let cgroup = format!("snaprun-test/{id}");
    let mut args = Containerd::run_args(rootfs.to_str().unwrap(), &id, &cgroup);
    args.insert(1, "--rm");
    args.extend(["sh", "-c", "echo hello from $$; exit 3"]);
    let out = c.ctr(&args);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}\n{}", c.log());
    assert!(all.contains("hello from 1"), "{all}");
    // The shim removed the container: snaprun's state for it is gone.
    assert!(!c.runtime_root().join(&id).exists());
}

#[test]
fn ctr_run_with_a_terminal_gets_a_pty_through_the_console_socket() {
    let c = Containerd::start();
    let rootfs = c.tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let id = unique_id("tty");
    let cgroup = format!("snaprun-test/{id}");
    let mut args = Containerd::run_args(rootfs.to_str().unwrap(), &id, &cgroup);
    args.insert(1, "--rm");
    args.insert(1, "-t");
    args.extend(["sh", "-c", "tty; exit 5"]);
    // ctr -t needs a terminal of its own: script(1) gives it one.
    let ctr = c.ctr_cmd(&args);
    let line: Vec<String> = std::iter::once(ctr.get_program())
        .chain(ctr.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .stdin(std::process::Stdio::null());
    let out = oci_support::close_fds(&mut cmd).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(5), "{all}\n{}", c.log());
    assert!(all.contains("/dev/pts/0"), "{all}");

    // `ctr task exec -t`: the shim hands snaprun exec a console socket too.
    let id = unique_id("ttyexec");
    let cgroup = format!("snaprun-test/{id}");
    let mut args = Containerd::run_args(rootfs.to_str().unwrap(), &id, &cgroup);
    args.insert(1, "--detach");
    args.extend(["sleep", "1000"]);
    let out = c.ctr(&args);
    assert!(out.status.success(), "{}", text(&out));
    let ctr = c.ctr_cmd(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "t1",
        &id,
        "sh",
        "-c",
        "tty; exit 7",
    ]);
    let line: Vec<String> = std::iter::once(ctr.get_program())
        .chain(ctr.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .stdin(std::process::Stdio::null());
    let out = oci_support::close_fds(&mut cmd).output().unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(7), "{all}");
    assert!(all.contains("/dev/pts/0"), "{all}");
}

#[test]
fn ctr_task_exec_ps_pause_resume_kill() {
    let c = Containerd::start();
    let rootfs = c.tmp.path().join("rootfs");
    busybox_rootfs(&rootfs);
    let id = unique_id("task");
    let cgroup = format!("snaprun-test/{id}");
    let mut args = Containerd::run_args(rootfs.to_str().unwrap(), &id, &cgroup);
    args.insert(1, "--detach");
    args.extend([
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done",
    ]);
    let out = c.ctr(&args);
    assert!(out.status.success(), "{}\n{}", text(&out), c.log());
    wait_for("task running", || {
        (task_status(&c, &id) == "RUNNING").then_some(())
    });

    // snaprun (not runc) keeps this container's state.
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
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("exec in sh -c i=0"), "{}", text(&out));

    // `ctr task ps` asks the shim, which runs `snaprun ps --format json`.
    let ls = String::from_utf8_lossy(&c.ctr(&["task", "ls"]).stdout).into_owned();
    let init = ls
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    let ps = c.ctr(&["task", "ps", &id]);
    let pids: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(pids.contains(&init), "init {init} not in {}", text(&ps));

    let out = c.ctr(&["task", "pause", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(task_status(&c, &id), "PAUSED");
    let frozen = count();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(count(), frozen, "the counter moved while paused");
    let out = c.ctr(&["task", "resume", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(task_status(&c, &id), "RUNNING");
    wait_for("the counter after resume", || {
        (count() > frozen).then_some(())
    });

    let out = c.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("task stopped", || {
        (task_status(&c, &id) == "STOPPED").then_some(())
    });
    let out = c.ctr(&["task", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    let out = c.ctr(&["containers", "rm", &id]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!Path::new(&c.runtime_root().join(&id)).exists());
}
