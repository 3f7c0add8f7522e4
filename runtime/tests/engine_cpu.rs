//! CPU state across checkpoint/restore of a thread that runs in user space
//! at checkpoint (`tests/programs/cpu_regs.c`) and the fs/gs bases
//! (`cpu_tls.c`).

mod common;

use common::{cpu_has, Case, Trigger};

/// cpu_regs spins with known register values until SIGUSR1; it must be
/// spinning (not in a syscall) when checkpointed.
fn registers(mode: &str) {
    let mut case = Case::start_with("cpu_regs", &[mode], &[]);
    case.wait_running(case.pid);
    case.checkpoint_ok();
    let pid = case.restore_ok();
    case.wait_running(pid);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
}

/// General registers, rflags.DF, MXCSR, x87 and xmm0-15.
#[test]
fn sse_and_general_registers() {
    registers("sse");
}

/// ymm0-15 (the AVX part of the XSAVE area).
#[test]
fn avx_registers() {
    if cpu_has("avx") {
        registers("avx");
    } else {
        eprintln!("this CPU has no AVX: checking the SSE registers instead");
        registers("sse");
    }
}

/// zmm0-31 and k0-7 (the AVX-512 parts of the XSAVE area).
#[test]
fn avx512_registers() {
    if cpu_has("avx512f") {
        registers("avx512");
    } else if cpu_has("avx") {
        eprintln!("this CPU has no AVX-512F: checking the AVX registers instead");
        registers("avx");
    } else {
        eprintln!("this CPU has no AVX: checking the SSE registers instead");
        registers("sse");
    }
}

/// fs base (TLS) and a gs base set with ARCH_SET_GS.
#[test]
fn fs_and_gs_base() {
    let mut case = Case::start("cpu_tls");
    case.checkpoint_restore_pass(Trigger::Go);
}
