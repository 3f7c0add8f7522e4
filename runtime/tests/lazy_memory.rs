//! Lazy restore (`restore --lazy`): the memory programs of
//! `tests/programs/mem_*.c`, restored with a pager, verify their state as
//! after an eager restore; the pager served pages (it faulted), ended once
//! every page was in, and left nothing behind. See docs/pager.md.

mod common;
mod lazy_support;

use common::{Case, Trigger};
use lazy_support::{restore_lazy, rss, wait_pager_done};

/// Checkpoint, lazy restore, go, PASS, and the pager ends by itself.
fn lazy_roundtrip(name: &str, args: &[&str]) -> snaprun_snapshot::pager::Stats {
    let mut case = Case::start_with(name, args, &[]);
    case.checkpoint_ok();
    let pid = restore_lazy(&mut case, &[]);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let s = wait_pager_done(case.workdir());
    assert!(
        s.faults > 0,
        "{name}: the pager served no fault ({s:?}): was anything lazy?"
    );
    case.assert_nothing_left("after the pager ended");
    s
}

/// 64 MiB of an xorshift stream: not in memory after the restore, every
/// byte right once read.
#[test]
fn big_anonymous_memory_loads_on_demand_and_every_byte_is_right() {
    let mut case = Case::start_with("mem_big", &["64"], &[]);
    case.checkpoint_ok();
    let pid = restore_lazy(&mut case, &[]);
    let resident = rss(pid);
    assert!(
        resident < 16 << 20,
        "{resident} bytes resident right after a lazy restore of a 64 MiB process"
    );
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let s = wait_pager_done(case.workdir());
    assert!(
        s.fault_bytes >= 60 << 20,
        "the 64 MiB came in by faults: {s:?}"
    );
}

/// Pattern, holes, zeroed and only-read pages, .data and .bss.
#[test]
fn private_anonymous_memory() {
    lazy_roundtrip("mem_anon", &[]);
}

/// Read-only mappings with content (registered and filled like any).
#[test]
fn read_only_mappings() {
    lazy_roundtrip("mem_readonly", &[]);
}

/// PROT_NONE mappings with content.
#[test]
fn prot_none_mappings() {
    lazy_roundtrip("mem_protnone", &[]);
}

/// A private file mapping's copied pages are written eagerly; the
/// process's anonymous memory is still served.
#[test]
fn private_file_mapping() {
    lazy_roundtrip("mem_file_private", &[]);
}

/// Shared anonymous memory is written eagerly.
#[test]
fn shared_anonymous_memory() {
    lazy_roundtrip("mem_shared_anon", &[]);
}

/// malloc'd blocks in the heap; brk grows after the restore.
#[test]
fn heap_and_brk() {
    lazy_roundtrip("mem_heap", &[]);
}

/// A deep stack, and growth below what the snapshot had.
#[test]
fn stack_contents_and_growth() {
    lazy_roundtrip("mem_stack", &[]);
}

/// `--from NAME:TAG`: the pager reads the same store.
#[test]
fn lazy_restore_from_a_named_snapshot() {
    let mut case = Case::start_with("mem_big", &["24"], &[]);
    let store = case.workdir().join("store");
    let store_s = store.display().to_string();
    let pid = case.pid.to_string();
    let out = case.snaprun([
        "checkpoint",
        "--pid",
        &pid,
        "--to",
        "lazy:v1",
        "--store",
        &store_s,
    ]);
    case.assert_ok("snaprun checkpoint --to", &out);
    case.reap_source_killed();
    let args = lazy_support::lazy_args(case.workdir(), &["--from", "lazy:v1", "--store", &store_s]);
    let pidfile = case.workdir().join("pidfile").display().to_string();
    let mut full = vec!["restore".to_string(), "--pid-file".into(), pidfile];
    full.extend(args);
    let out = case.snaprun(&full);
    let pid = case.restored_from(&out);
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
    let s = wait_pager_done(case.workdir());
    assert!(s.fault_bytes >= 20 << 20, "{s:?}");
    assert!(
        store.join("working-sets").read_dir().unwrap().count() == 1,
        "the working set is saved in the store"
    );
}
