//! What a lazily restored process does to memory that is not in yet:
//! madvise(DONTNEED), mremap, munmap (the pager's map follows the uffd
//! events), and fork (the child's memory is served through the uffd the
//! fork event brings). The pager is kept from streaming (a long recording
//! window), so the pages are missing when the process acts on them.

mod common;
mod lazy_support;

use common::{Case, Trigger};
use lazy_support::{restore_lazy, wait_pager_done};

/// The programs pass on their own (a failure there is the program's).
#[test]
fn the_programs_pass_without_snaprun() {
    for (name, args) in [
        ("lazy_events", &[][..]),
        ("lazy_fork", &[][..]),
        ("lazy_partial", &["16", "4"][..]),
    ] {
        let mut case = Case::start_with(name, args, &[]);
        let pid = case.pid;
        case.trigger(pid, Trigger::Go);
        case.expect_pass(pid);
    }
}

/// Streaming held back until the process has ended.
const HOLD: &[&str] = &["--ws-window", "60000"];

#[test]
fn dropped_moved_and_unmapped_memory_while_its_pages_are_missing() {
    let mut case = Case::start("lazy_events");
    case.checkpoint_ok();
    let pid = restore_lazy(&mut case, HOLD);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let s = wait_pager_done(case.workdir());
    assert!(s.removes >= 1, "no REMOVE event: {s:?}");
    assert!(s.remaps >= 1, "no REMAP event: {s:?}");
    assert!(s.unmaps >= 1, "no UNMAP event: {s:?}");
    assert_eq!(s.streamed_bytes, 0, "streaming was held: {s:?}");
}

#[test]
fn a_process_that_forks_after_a_lazy_restore_keeps_working() {
    let mut case = Case::start("lazy_fork");
    case.checkpoint_ok();
    let pid = restore_lazy(&mut case, HOLD);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let s = wait_pager_done(case.workdir());
    assert!(
        s.forks >= 2,
        "want the child's and the grandchild's fork events: {s:?}"
    );
    // The child read all 32 MiB through its own uffd, the parent again.
    assert!(s.fault_bytes >= 64 << 20, "{s:?}");
}
