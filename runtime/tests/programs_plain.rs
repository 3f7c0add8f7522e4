//! The test programs themselves, without snaprun: each started, triggered
//! and expected to PASS. A failure here is a bug in the program (or in the
//! harness), not in the engine.

mod common;

use common::{cpu_has, nr, Case, Trigger};

fn plain(name: &str, args: &[&str], env: &[(&str, &str)], trigger: Trigger) {
    let mut case = Case::start_with(name, args, env);
    let pid = case.pid;
    case.trigger(pid, trigger);
    case.expect_pass(pid);
}

fn go(name: &str) {
    plain(name, &[], &[], Trigger::Go);
}

#[test]
fn memory_programs() {
    for p in [
        "mem_anon",
        "mem_readonly",
        "mem_protnone",
        "mem_file_private",
        "mem_shared_anon",
        "mem_shared_alias",
        "mem_heap",
        "mem_stack",
        "mem_vdso",
        "mem_big",
    ] {
        go(p);
    }
}

#[test]
fn cpu_programs() {
    let mut modes = vec!["sse"];
    if cpu_has("avx") {
        modes.push("avx");
    }
    if cpu_has("avx512f") {
        modes.push("avx512");
    }
    for mode in modes {
        let mut case = Case::start_with("cpu_regs", &[mode], &[]);
        let pid = case.pid;
        case.wait_running(pid);
        case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
        case.expect_pass(pid);
    }
    go("cpu_tls");
}

#[test]
fn syscall_programs() {
    for (name, nrs) in [
        ("sys_pause", &[nr::PAUSE][..]),
        ("sys_pipe_read", &[nr::READ][..]),
    ] {
        let mut case = Case::start(name);
        let pid = case.pid;
        case.wait_in_syscall(pid, nrs);
        case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
        case.expect_pass(pid);
    }
    plain("sys_nanosleep", &[], &[], Trigger::None);
}

#[test]
fn signal_programs() {
    for p in ["sig_handlers", "sig_mask", "sig_pending", "sig_altstack"] {
        go(p);
    }
}

#[test]
fn file_programs() {
    for p in [
        "fd_regular",
        "fd_deleted",
        "fd_dir",
        "fd_dup",
        "fd_devices",
        "fd_shm",
        "pipe_buffered",
        "fd_inotify",
    ] {
        go(p);
    }
}

#[test]
fn anon_fd_programs() {
    for p in [
        "fd_timerfd",
        "fd_signalfd",
        "fd_memfd",
        "fd_fifo",
        "fd_userfaultfd",
        "fd_flock",
    ] {
        go(p);
    }
    plain("fd_fifo", &["shared"], &[], Trigger::Go);
    let mut case = Case::start("fd_epoll");
    let pid = case.pid;
    // epoll_wait, epoll_pwait, epoll_pwait2.
    case.wait_in_syscall(pid, &[232, 281, 441]);
    case.trigger(pid, Trigger::Signal(libc::SIGUSR1));
    case.expect_pass(pid);
}

#[test]
fn process_programs() {
    for p in [
        "proc_cwd_umask",
        "proc_rlimits",
        "proc_name_exe",
        "proc_ids",
        "proc_seccomp",
        "proc_caps",
        "life_basic",
    ] {
        go(p);
    }
    plain(
        "proc_mm_fields",
        &["beta gamma", "mark-\u{394}-42", "--last=arg"],
        &[
            ("SNAPTEST_MARK", "mark-\u{394}-42"),
            ("SNAPTEST_OTHER", "x y z"),
        ],
        Trigger::Go,
    );
}

#[test]
fn thread_programs() {
    for p in ["thr_basic", "thr_churn"] {
        go(p);
    }
}

#[test]
fn tree_programs() {
    go("tree_basic");
}

#[test]
fn socket_programs() {
    go("sock_unix_netns");
}
