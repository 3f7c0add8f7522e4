//! Whole-process lifecycles: one image restored twice, --leave-running,
//! a bigger process, and `snaprun snapshot inspect`.

mod common;

use std::fs;
use std::time::Duration;

use common::{proc_state, show_output, tracer_pid, Case, Trigger};

/// Restore, PASS; then restore the same image again: same pid, PASS again.
#[test]
fn restore_twice_from_one_image() {
    let mut case = Case::start("life_basic");
    case.checkpoint_ok();
    let first = case.restore_ok();
    case.go();
    case.expect_pass(first);
    case.wait_pid_gone(first);
    case.reset();
    let second = case.restore_ok();
    assert_eq!(second, first, "the second restore got another pid");
    case.go();
    case.expect_pass(second);
}

/// --leave-running: the source keeps running untouched and PASSes; once it
/// has exited, the image restores and PASSes too.
#[test]
fn leave_running_then_restore() {
    let mut case = Case::start("life_basic");
    let out = case.checkpoint(&["--leave-running"]);
    case.assert_ok("snaprun checkpoint --leave-running", &out);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        case.source_running(),
        "the source ended after --leave-running"
    );
    assert_eq!(tracer_pid(case.pid), Some(0), "the source is still traced");
    let state = proc_state(case.pid);
    assert!(
        !matches!(state, Some('t') | Some('T')),
        "the source is left stopped (state {state:?})"
    );
    case.go();
    case.expect_pass(case.pid);
    case.reset();
    let pid = case.restore_ok();
    case.go();
    case.expect_pass(pid);
}

/// 256 MiB of xorshift data, every byte verified; phase timings printed.
#[test]
fn big_process_256_mib() {
    let mut case = Case::start("mem_big");
    let out = case.checkpoint(&["--timings"]);
    case.assert_ok("snaprun checkpoint --timings", &out);
    eprintln!(
        "checkpoint timings:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stderr.is_empty(),
        "checkpoint --timings printed nothing on stderr"
    );
    case.reap_source_killed();
    let out = case.restore(&["--timings"]);
    eprintln!("restore timings:\n{}", String::from_utf8_lossy(&out.stderr));
    let pid = case.restored_from(&out);
    assert!(
        !out.stderr.is_empty(),
        "restore --timings printed nothing on stderr"
    );
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
}

fn json_has_pid(v: &serde_json::Value, pid: i64) -> bool {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .any(|(k, v)| (k == "pid" && v.as_i64() == Some(pid)) || json_has_pid(v, pid)),
        serde_json::Value::Array(a) => a.iter().any(|v| json_has_pid(v, pid)),
        _ => false,
    }
}

/// `snapshot inspect` names the pid and the VMAs; `--json` is JSON with
/// the pid.
#[test]
fn snapshot_inspect() {
    let mut case = Case::start("life_basic");
    // The first mapping of the program (its ELF header): its start address
    // must appear in the human summary.
    let maps = fs::read_to_string(format!("/proc/{}/maps", case.pid)).expect("read maps");
    let first = maps.lines().next().expect("empty maps");
    let start = first.split('-').next().unwrap().to_ascii_lowercase();
    case.checkpoint_ok();
    let image = case.image();

    let out = case.snaprun([
        std::ffi::OsStr::new("snapshot"),
        "inspect".as_ref(),
        image.as_os_str(),
    ]);
    case.assert_ok("snaprun snapshot inspect", &out);
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        text.contains(&case.pid.to_string()),
        "inspect does not name pid {}\n{}",
        case.pid,
        show_output("inspect", &out)
    );
    assert!(
        text.contains(start.trim_start_matches('0')),
        "inspect shows no VMA at 0x{start} ({first})\n{}",
        show_output("inspect", &out)
    );

    let out = case.snaprun([
        std::ffi::OsStr::new("snapshot"),
        "inspect".as_ref(),
        image.as_os_str(),
        "--json".as_ref(),
    ]);
    case.assert_ok("snaprun snapshot inspect --json", &out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect --json is not JSON: {e}\n{}",
            show_output("inspect --json", &out)
        )
    });
    assert!(
        json_has_pid(&v, case.pid.into()),
        "inspect --json has no \"pid\": {}\n{}",
        case.pid,
        show_output("inspect --json", &out)
    );
}
