//! Process trees (`tests/programs/tree_*.c`): every descendant is
//! checkpointed with the root and restored under its original parent, with
//! its session and process group, the zombies as zombies, and pipes,
//! shared memory and inherited open files shared as before.

mod common;

use common::{Case, Trigger};

/// The pids of the snapshot's processes and zombies but the root.
fn other_pids(case: &Case) -> Vec<i32> {
    let image = case.image();
    let out = case.snaprun([
        "snapshot".as_ref(),
        "inspect".as_ref(),
        image.as_os_str(),
        "--json".as_ref(),
    ]);
    case.assert_ok("snaprun snapshot inspect --json", &out);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    let mut pids: Vec<i32> = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|p| p["pid"].as_i64().unwrap() as i32)
        .collect();
    if let Some(z) = m["zombies"].as_array() {
        pids.extend(z.iter().map(|z| z["pid"].as_i64().unwrap() as i32));
    }
    pids
}

/// Root, two children (one its own session), a grandchild (its own
/// group) and a zombie; pipes, shared memory and an inherited file.
#[test]
fn tree_with_sessions_groups_zombie_and_shared_files() {
    let mut case = Case::start("tree_basic");
    case.checkpoint_ok();
    let others = other_pids(&case);
    assert_eq!(others.len(), 4, "want A, B, G and the zombie Z: {others:?}");
    // The killed tree's other processes were handed to this test (the
    // subreaper): reap them so their pids are free again.
    for &pid in &others {
        case.wait_pid_gone(pid);
    }
    let pid = case.restore_ok();
    case.trigger(pid, Trigger::Go);
    case.expect_pass(pid);
}
