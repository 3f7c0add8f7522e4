//! What the container checkpoint tests share: a container that counts
//! into a file on a tmpfs, and reading that file from the host.

// Each test binary uses a different part of it.
#![allow(dead_code)]

use std::fs;

use super::oci_support::wait_for;

/// Counts into /run/counter (a tmpfs) every 0.1 s; /run/once is written
/// once, before the loop, so it exists only in the tmpfs.
pub const COUNTER: &str =
    "echo hello > /run/once; i=0; while true; do i=$((i+1)); echo $i > /run/counter; sleep 0.1; done";

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
        counter(pid).filter(|&c| c >= n)
    })
}
