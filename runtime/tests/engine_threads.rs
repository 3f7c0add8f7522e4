//! Multi-threaded processes (`tests/programs/thr_*.c`): every thread is
//! frozen, dumped and recreated with its own id and state.

mod common;

use common::roundtrip;

/// Five threads in different waits (futex, nanosleep, user-space spin,
/// blocked signal) keep their tids, names, TLS, masks, altstacks, rseq,
/// robust list and clear-tid address; a thread-directed pending signal
/// reaches its thread.
#[test]
fn threads_keep_their_state() {
    roundtrip("thr_basic");
}

/// Threads being created and joined all the time: freezing catches every
/// thread, and the churn goes on after restore.
#[test]
fn threads_created_during_freeze() {
    for _ in 0..5 {
        roundtrip("thr_churn");
    }
}
