//! Restoring into a new PID namespace: asked for (`--new-pidns`), or chosen
//! because the snapshot's ids are in use on the host. Inside, the process
//! and its threads have their original ids.

mod common;

use std::process::Output;

use common::{nr, parse_pid, show_output, Case, Trigger};

/// The restored process's pid inside its namespace, and the depth of that
/// namespace (NSpid's field count), from its status.
fn nspid(pid: i32) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .expect("NSpid")
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn restored_pid(case: &Case, out: &Output) -> i32 {
    case.assert_ok("snaprun restore", out);
    parse_pid(&out.stdout)
        .unwrap_or_else(|| panic!("no pid printed\n{}", show_output("restore", out)))
}

/// `--new-pidns`: five threads keep their tids (as the threads themselves
/// see them) although the host numbers differ.
#[test]
fn threads_in_a_new_pid_namespace() {
    let mut case = Case::start("thr_basic");
    case.checkpoint_ok();
    let out = case.restore(&["--new-pidns"]);
    let pid = restored_pid(&case, &out);
    let ids = nspid(pid);
    assert_eq!(ids.len(), 2, "not in a child PID namespace: NSpid {ids:?}");
    assert_eq!(ids[0], pid, "NSpid {ids:?}");
    assert_eq!(ids[1], case.pid, "pid inside the namespace: NSpid {ids:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("new PID namespace"), "{stderr}");
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
}

/// The source still runs (`--leave-running`), so its pid is taken: restore
/// goes to a new namespace by itself, says why, and both processes run.
#[test]
fn taken_pid_falls_back_to_a_new_pid_namespace() {
    let mut case = Case::start("sys_pause");
    let out = case.checkpoint(&["--leave-running"]);
    case.assert_ok("snaprun checkpoint --leave-running", &out);
    assert!(case.source_running(), "the source stopped");
    let out = case.restore(&[]);
    let pid = restored_pid(&case, &out);
    assert_ne!(pid, case.pid);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("ids [{}] are in use on the host", case.pid))
            && stderr.contains("new PID namespace"),
        "restore did not say why it used a new namespace: {stderr}"
    );
    assert_eq!(nspid(pid), vec![pid, case.pid]);
    case.wait_in_syscall(pid, &[nr::PAUSE]);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
    assert!(case.source_running(), "the source stopped");
}
