//! Fd kinds with state beyond a path across checkpoint/restore
//! (`tests/programs/fd_*.c`): timerfd, signalfd, epoll, inotify, memfd,
//! and named FIFOs holding data.

mod common;

use std::thread::sleep;
use std::time::Duration;

use common::{roundtrip, show_output, Case, Trigger};

/// epoll_wait, epoll_pwait, epoll_pwait2.
const EPOLL_WAITS: &[i64] = &[232, 281, 441];

/// timerfds: clocks, relative and absolute timers, owed ticks, and a
/// periodic timer that keeps ticking. Four seconds pass between checkpoint
/// and restore: a relative timer must not count them.
#[test]
fn timerfd_settings_and_ticks() {
    let mut case = Case::start("fd_timerfd");
    case.checkpoint_ok();
    sleep(Duration::from_secs(4));
    let pid = case.restore_ok();
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
}

/// signalfds: masks, flags, and pending signals read through them.
#[test]
fn signalfd_masks_and_pending_signals() {
    roundtrip("fd_signalfd");
}

/// A process waiting in epoll_wait on an epoll that watches another epoll
/// (pipe, eventfd, timerfd; edge-triggered, one-shot, exclusive; a
/// registration whose fd was closed, one whose number now names another
/// file) gets the right events after restore.
#[test]
fn epoll_registrations_and_wait() {
    let mut case = Case::start("fd_epoll");
    case.wait_in_syscall(case.pid, EPOLL_WAITS);
    case.checkpoint_ok();
    let pid = case.restore_ok();
    case.wait_in_syscall(pid, EPOLL_WAITS);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
}

/// memfds: name, content (with a hole), seals, mode, offsets, flags; a
/// memfd with two opens and a shared mapping, one mapped shared and
/// private with its fd closed, one write-sealed and mapped read-only: each
/// is one object after restore.
#[test]
fn memfds_with_mappings_and_seals() {
    roundtrip("fd_memfd");
}

/// An epoll registration whose file only another process still holds
/// cannot be made again: checkpoint refuses it, naming the epoll fd and the
/// registered fd number, and the source runs on.
#[test]
fn epoll_watching_a_file_held_elsewhere_is_refused() {
    let mut case = Case::start_with("fd_epoll", &["orphan"], &[]);
    case.wait_in_syscall(case.pid, EPOLL_WAITS);
    let out = case.checkpoint(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && stderr.contains("fd 34")
            && stderr.contains("registered as fd 44"),
        "checkpoint should refuse the epoll registration\n{}",
        show_output("checkpoint", &out)
    );
    assert!(
        case.source_running(),
        "the source did not survive the refusal"
    );
    case.wait_in_syscall(case.pid, EPOLL_WAITS);
    case.trigger(case.pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(case.pid);
}

/// A named FIFO holding 100 KiB, open three times in the process: the
/// bytes come back once, with the capacity and flags.
#[test]
fn fifo_with_buffered_data() {
    roundtrip("fd_fifo");
}

/// A FIFO holding data that another process also has open is refused,
/// naming the FIFO, and the source runs on untouched.
#[test]
fn fifo_with_data_shared_with_another_process_is_refused() {
    let mut case = Case::start_with("fd_fifo", &["shared"], &[]);
    let out = case.checkpoint(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1)
            && stderr.contains("fd 60")
            && stderr.contains("fifo")
            && stderr.contains("also has open"),
        "checkpoint should refuse the shared FIFO\n{}",
        show_output("checkpoint", &out)
    );
    assert!(
        case.source_running(),
        "the source did not survive the refusal"
    );
    case.go();
    case.expect_pass(case.pid);
}

/// inotify: watches with their masks and watch descriptors (a gap
/// included) deliver events after restore.
#[test]
fn inotify_watches() {
    roundtrip("fd_inotify");
}
