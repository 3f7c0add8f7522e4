//! Threads checkpointed inside blocking syscalls must resume correctly
//! (`tests/programs/sys_*.c`).

mod common;

use common::{nr, Case, Trigger};

/// Checkpointed in pause(); after restore, pause() must still be waiting
/// and return EINTR only once the SIGUSR1 handler ran.
#[test]
fn pause_restarts() {
    let mut case = Case::start("sys_pause");
    case.wait_in_syscall(case.pid, &[nr::PAUSE]);
    case.checkpoint_ok();
    let pid = case.restore_ok();
    case.wait_in_syscall(pid, &[nr::PAUSE]);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
}

/// Checkpointed inside a 3 s nanosleep; after restore the sleep completes
/// (EINTR retried by the program) and lasted at least 3 s in all.
#[test]
fn nanosleep_completes() {
    let mut case = Case::start("sys_nanosleep");
    case.wait_in_syscall(case.pid, &[nr::NANOSLEEP, nr::CLOCK_NANOSLEEP]);
    case.checkpoint_ok();
    assert!(
        case.result().is_none(),
        "the sleep ended before the checkpoint finished: the test proves nothing"
    );
    let pid = case.restore_ok();
    case.expect_pass(pid);
}

/// Checkpointed in read() on a pipe; after restore a SIGUSR1 handler
/// writes one byte and the restarted read returns it.
#[test]
fn pipe_read_restarts() {
    let mut case = Case::start("sys_pipe_read");
    case.wait_in_syscall(case.pid, &[nr::READ]);
    case.checkpoint_ok();
    let pid = case.restore_ok();
    case.wait_in_syscall(pid, &[nr::READ]);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
}
