//! Process attributes across checkpoint/restore (`tests/programs/proc_*.c`).

mod common;

use common::{roundtrip, Case, Trigger};

/// cwd and umask.
#[test]
fn cwd_and_umask() {
    roundtrip("proc_cwd_umask");
}

/// Resource limits.
#[test]
fn rlimits() {
    roundtrip("proc_rlimits");
}

/// comm (PR_SET_NAME) and /proc/self/exe.
#[test]
fn name_and_exe() {
    roundtrip("proc_name_exe");
}

/// cmdline, environ, auxv and the mm addresses of /proc/self/stat.
#[test]
fn mm_fields_cmdline_environ_auxv() {
    let mut case = Case::start_with(
        "proc_mm_fields",
        &["beta gamma", "mark-\u{394}-42", "--last=arg"],
        &[
            ("SNAPTEST_MARK", "mark-\u{394}-42"),
            ("SNAPTEST_OTHER", "x y z"),
        ],
    );
    case.checkpoint_restore_pass(Trigger::Go);
}

/// Session and process group (setsid), gids and supplementary groups.
#[test]
fn session_and_credentials() {
    roundtrip("proc_ids");
}

/// Capability sets (bounding, permitted, effective, inheritable, ambient),
/// no_new_privs and uid 1000, in both threads of the process.
#[test]
fn capabilities_and_no_new_privs_per_thread() {
    roundtrip("proc_caps");
}
