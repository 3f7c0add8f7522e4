//! The pager never leaves a process hanging: when a chunk cannot be had
//! (corrupt in its pack, or the store gone), it kills the process within
//! 5 s and logs why, naming the chunk.

mod common;
mod lazy_support;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{describe_process, Case};
use lazy_support::{pager_log, restore_lazy, wait_stats};

/// The digest (hex) of the last stored chunk of the largest mapping of
/// the snapshot in `img`, and the address it restores to.
fn last_chunk_of_largest_vma(img: &Path) -> String {
    let text = std::fs::read_to_string(img.join("manifest.json")).expect("manifest");
    let env: serde_json::Value = serde_json::from_str(&text).expect("json");
    let vmas = env["manifest"]["processes"][0]["vmas"]
        .as_array()
        .expect("vmas");
    let largest = vmas
        .iter()
        .max_by_key(|v| {
            v["runs"].as_array().map_or(0, |r| {
                r.iter().map(|r| r["len"].as_u64().unwrap()).sum::<u64>()
            })
        })
        .expect("a vma");
    let chunks: Vec<&serde_json::Value> = largest["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["chunks"].as_array().unwrap())
        .filter(|c| c["digest"].is_string())
        .collect();
    chunks.last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Flips bytes in the middle of a chunk in its pack file (the index
/// format is in docs/store.md: per chunk its 32-byte digest, then the
/// offset (u64) and stored length (u32) in the pack).
fn corrupt_chunk(img: &Path, digest_hex: &str) {
    let digest: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&digest_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    for e in std::fs::read_dir(img.join("packs")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("idx") {
            continue;
        }
        let idx = std::fs::read(&path).unwrap();
        let Some(at) = idx.windows(32).position(|w| w == digest.as_slice()) else {
            continue;
        };
        let offset = u64::from_le_bytes(idx[at + 32..at + 40].try_into().unwrap());
        let stored = u32::from_le_bytes(idx[at + 40..at + 44].try_into().unwrap()) as u64;
        let pack = path.with_extension("pack");
        let mut bytes = std::fs::read(&pack).unwrap();
        let mid = (offset + stored / 2) as usize;
        for b in &mut bytes[mid..mid + 64] {
            *b ^= 0x5a;
        }
        std::fs::write(&pack, bytes).unwrap();
        return;
    }
    panic!("chunk {digest_hex} not found in any pack index");
}

/// Waits for the restored `pid` (our child: the harness is a subreaper)
/// to end, `within` at most.
fn wait_death(pid: i32, within: Duration, dir: &Path) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        let mut status = 0;
        // SAFETY: waitpid on the pid this test restored, with a live
        // out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return ExitStatus::from_raw(status);
        }
        if Instant::now() > deadline {
            panic!(
                "pid {pid} still runs {within:?} later\n{}\n--- pager log:\n{}",
                describe_process(pid),
                pager_log(dir)
            );
        }
        sleep(Duration::from_millis(10));
    }
}

fn assert_killed_with_reason(case: &Case, pid: i32, digest: Option<&str>) {
    let started = Instant::now();
    let status = wait_death(pid, Duration::from_secs(5), case.workdir());
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "pid {pid} ended {status}, want SIGKILL\n--- pager log:\n{}",
        pager_log(case.workdir())
    );
    let s = wait_stats(case.workdir(), Duration::from_secs(5), |s| {
        s.error.is_some()
    });
    let reason = s.error.unwrap();
    let log = pager_log(case.workdir());
    assert!(
        log.contains("cannot deliver a page: killing the processes"),
        "{log}"
    );
    match digest {
        Some(d) => {
            assert!(reason.contains(d), "the reason names chunk {d}: {reason}");
            assert!(log.contains(d), "the log names chunk {d}: {log}");
        }
        None => {
            let named = reason.split("chunk ").nth(1).is_some_and(|rest| {
                rest.len() >= 64 && rest[..64].chars().all(|c| c.is_ascii_hexdigit())
            });
            assert!(named, "the reason names a chunk digest: {reason}");
        }
    }
    assert!(
        case.result().is_none(),
        "the process answered: {:?}",
        case.result()
    );
    eprintln!(
        "killed {:?} after the check began: {reason}",
        started.elapsed()
    );
}

/// A chunk corrupt in its pack: the pager meets it while streaming (after
/// the resume) and kills the process.
#[test]
fn a_corrupt_chunk_met_while_streaming_kills_the_process_naming_it() {
    let mut case = Case::start_with("mem_big", &["32"], &[]);
    case.checkpoint_ok();
    let digest = last_chunk_of_largest_vma(&case.image());
    corrupt_chunk(&case.image(), &digest);
    // No working set: streaming starts at the resume.
    let pid = restore_lazy(&mut case, &["--no-working-set"]);
    assert_killed_with_reason(&case, pid, Some(&digest));
}

/// The store removed after the restore: the next fault cannot be served,
/// and the process is killed instead of waiting forever.
#[test]
fn a_store_removed_under_a_running_process_kills_it_at_its_next_fault() {
    let mut case = Case::start_with("mem_big", &["32"], &[]);
    case.checkpoint_ok();
    // A long window: no streaming, the pages stay missing.
    let pid = restore_lazy(&mut case, &["--ws-window", "60000"]);
    std::fs::remove_dir_all(case.image()).unwrap();
    case.go();
    assert_killed_with_reason(&case, pid, None);
}
