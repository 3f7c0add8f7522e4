//! Signal state across checkpoint/restore (`tests/programs/sig_*.c`).

mod common;

use common::roundtrip;

/// Handlers, sa_flags and sa_mask of every signal; SIG_IGN; SA_RESETHAND.
#[test]
fn signal_handlers() {
    roundtrip("sig_handlers");
}

/// The blocked-signal mask.
#[test]
fn signal_mask() {
    roundtrip("sig_mask");
}

/// Pending signals, thread- and process-directed, RT ones with values.
#[test]
fn pending_signals() {
    roundtrip("sig_pending");
}

/// sigaltstack, and an SA_ONSTACK handler running on it.
#[test]
fn alternate_signal_stack() {
    roundtrip("sig_altstack");
}
