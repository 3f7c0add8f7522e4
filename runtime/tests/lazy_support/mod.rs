//! Helpers for the lazy-restore tests (`runtime/tests/lazy_*.rs`): restore
//! with `--lazy`, the pager's log and figures in the case's WORKDIR, and
//! waits on the pager.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use snaprun_snapshot::pager::Stats;

use crate::common::{describe_process, Case};

pub fn log_path(dir: &Path) -> PathBuf {
    dir.join("pager.log")
}

pub fn stats_path(dir: &Path) -> PathBuf {
    dir.join("pager.json")
}

/// `--lazy` with the pager's log and figures in `dir`, then `extra`.
pub fn lazy_args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "--lazy".to_string(),
        "--pager-log".into(),
        log_path(dir).display().to_string(),
        "--pager-stats".into(),
        stats_path(dir).display().to_string(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

pub fn pager_log(dir: &Path) -> String {
    std::fs::read_to_string(log_path(dir)).unwrap_or_else(|e| format!("<no pager log: {e}>"))
}

/// Restores the case's image lazily (`extra` after the lazy flags) and
/// returns the restored pid, which must be the original one.
pub fn restore_lazy(case: &mut Case, extra: &[&str]) -> i32 {
    let _ = std::fs::remove_file(stats_path(case.workdir()));
    let args = lazy_args(case.workdir(), extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = case.restore(&args);
    let pid = case.restored_from(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lazy restore: pager pid"),
        "restore --lazy did not report its pager: {stderr}"
    );
    pid
}

/// Waits (`timeout` at most) until the pager has written figures that
/// `ready` accepts, and returns them.
pub fn wait_stats(dir: &Path, timeout: Duration, ready: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(s) = Stats::read(&stats_path(dir)) {
            if ready(&s) {
                return s;
            }
        }
        if Instant::now() > deadline {
            panic!(
                "no pager figures as expected after {timeout:?}: {:?}\n--- pager log:\n{}",
                Stats::read(&stats_path(dir)).ok(),
                pager_log(dir)
            );
        }
        sleep(Duration::from_millis(10));
    }
}

/// Waits until the pager has brought every page in and ended (10 s at
/// most); its figures.
pub fn wait_pager_done(dir: &Path) -> Stats {
    let s = wait_stats(dir, Duration::from_secs(10), |s| {
        s.done || s.error.is_some()
    });
    assert!(
        s.error.is_none(),
        "the pager failed: {:?}\n--- pager log:\n{}",
        s.error,
        pager_log(dir)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::common::is_alive(s.pager_pid as i32) {
        assert!(
            Instant::now() < deadline,
            "pager {} still runs after it said it was done\n{}",
            s.pager_pid,
            describe_process(s.pager_pid as i32)
        );
        sleep(Duration::from_millis(10));
    }
    s
}

/// Resident memory of a process (VmRSS), in bytes.
pub fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// The pager's pid, from what `restore --lazy` printed on stderr.
pub fn pager_pid_from(out: &std::process::Output) -> u32 {
    let stderr = String::from_utf8_lossy(&out.stderr);
    stderr
        .lines()
        .find_map(|l| l.split("pager pid ").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pager pid in: {stderr}"))
}
