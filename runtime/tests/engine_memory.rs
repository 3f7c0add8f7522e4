//! Memory state across checkpoint/restore: each test runs one program of
//! `tests/programs/mem_*.c` (see `docs/test-protocol.md`).

mod common;

use common::roundtrip;

/// 64 MiB private anonymous memory with a pattern, never-touched holes,
/// explicitly zeroed and only-read pages, .data and .bss.
#[test]
fn private_anonymous_memory() {
    roundtrip("mem_anon");
}

/// A filled mapping made read-only, and a PROT_READ one: content kept,
/// writes still fault.
#[test]
fn read_only_mappings() {
    roundtrip("mem_readonly");
}

/// PROT_NONE mappings, one with content before mprotect(PROT_NONE), one
/// splitting a RW mapping.
#[test]
fn prot_none_mappings() {
    roundtrip("mem_protnone");
}

/// MAP_PRIVATE file mapping: copied-on-write pages keep the written bytes,
/// the rest still show the file, the mapping still names the file.
#[test]
fn private_file_mapping() {
    roundtrip("mem_file_private");
}

/// MAP_SHARED|MAP_ANONYMOUS memory with content and holes.
#[test]
fn shared_anonymous_memory() {
    roundtrip("mem_shared_anon");
}

/// One shared anonymous object mapped at two addresses stays one object.
#[test]
fn shared_anonymous_memory_mapped_twice() {
    roundtrip("mem_shared_alias");
}

/// malloc'd blocks, sbrk(0) unchanged, brk still grows.
#[test]
fn heap_and_brk() {
    roundtrip("mem_heap");
}

/// A deep recursion verified on unwind, then a deeper one (the stack grows).
#[test]
fn stack_contents_and_growth() {
    roundtrip("mem_stack");
}

/// The vDSO stays at its address and its clocks work.
#[test]
fn vdso_clocks() {
    roundtrip("mem_vdso");
}
