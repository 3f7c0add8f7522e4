//! The working set: a lazy restore records the chunks the process needed
//! (here: the 8 MiB of 64 that `lazy_partial` reads after go) and saves
//! them beside the snapshot; the next lazy restore pushes them before the
//! process resumes, so it faults far less before its answer.

mod common;
mod lazy_support;

use common::{Case, Trigger};
use lazy_support::{restore_lazy, wait_pager_done};

#[test]
fn the_working_set_is_recorded_then_pushed_and_faults_drop() {
    let mut case = Case::start_with("lazy_partial", &["64", "8"], &[]);
    case.checkpoint_ok();

    let pid = restore_lazy(&mut case, &[]);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let first = wait_pager_done(case.workdir());
    let w1 = first.window.clone().expect("the window closed");
    assert_eq!(first.ws_loaded_chunks, 0, "no set before: {first:?}");
    assert_eq!(first.ws_pushed_chunks, 0);
    assert!(
        w1.fault_bytes >= 8 << 20,
        "the 8 MiB came in by faults: {first:?}"
    );
    let saved = first.ws_saved_chunks.expect("a working set was saved");
    assert!(saved >= 32, "{first:?}");
    let sets = case.image().join("working-sets");
    assert_eq!(
        std::fs::read_dir(&sets).map(|d| d.count()).unwrap_or(0),
        1,
        "one set in {}",
        sets.display()
    );

    case.wait_pid_gone(pid);
    case.reset();
    let pid = restore_lazy(&mut case, &[]);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let second = wait_pager_done(case.workdir());
    let w2 = second.window.clone().expect("the window closed");
    assert_eq!(second.ws_loaded_chunks, saved);
    assert!(
        second.ws_pushed_bytes >= 8 << 20,
        "the set was pushed before the resume: {second:?}"
    );
    assert!(
        w2.faults * 4 < w1.faults,
        "faults before the answer: {} with the set, {} without",
        w2.faults,
        w1.faults
    );
    eprintln!(
        "faults before the answer: {} ({} bytes) recording, {} ({} bytes) with the set pushed",
        w1.faults, w1.fault_bytes, w2.faults, w2.fault_bytes
    );

    // --no-working-set: neither pushed nor recorded.
    case.wait_pid_gone(pid);
    case.reset();
    let pid = restore_lazy(&mut case, &["--no-working-set"]);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let third = wait_pager_done(case.workdir());
    assert_eq!(third.ws_pushed_chunks, 0, "{third:?}");
    assert_eq!(third.ws_saved_chunks, None, "{third:?}");
}
