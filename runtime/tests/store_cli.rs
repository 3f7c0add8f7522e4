//! The snapshot store through the real `snaprun` binary and real
//! processes: named checkpoints and restores, dedup between checkpoints and
//! between processes, kill -9 of a checkpoint, GC beside a running
//! checkpoint, push/pull through a real S3 server (s3s-fs) on loopback.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{show_output, Case, SNAPRUN};
use snaprun_store::testing::{S3Server, BUCKET};
use snaprun_store::{root, Store, Tier};

/// Runs `snaprun ARGS --store STORE` with extra environment.
fn snaprun(store: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(SNAPRUN)
        .args(args)
        .arg("--store")
        .arg(store)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run snaprun")
}

fn ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{}", show_output(what, out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Bytes of pack files in a store: what it holds.
fn stored_bytes(store: &Path) -> u64 {
    std::fs::read_dir(store.join("packs"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "pack"))
                .map(|p| std::fs::metadata(p).unwrap().len())
                .sum()
        })
        .unwrap_or(0)
}

fn checkpoint(case: &Case, store: &Path, name: &str, extra: &[&str]) -> Output {
    let pid = case.pid.to_string();
    let mut args = vec!["checkpoint", "--pid", &pid, "--to", name];
    args.extend(extra);
    snaprun(store, &args, &[])
}

/// Restores `name` for `case`, and checks that the process verifies its
/// memory and passes.
fn restore_and_pass(case: &mut Case, store: &Path, name: &str, env: &[(&str, String)]) {
    case.reset();
    let pidfile = case.workdir().join("pidfile");
    let mut args = vec![
        "restore",
        "--from",
        name,
        "--pid-file",
        pidfile.to_str().unwrap(),
    ];
    let remote;
    if !env.is_empty() {
        remote = format!("s3://{BUCKET}/cli");
        args.extend(["--remote", remote.as_str()]);
    }
    let out = snaprun(store, &args, env);
    let pid = case.restored_from(&out);
    case.go();
    case.expect_pass(pid);
}

/// Every root in the store lists only chunks the store holds, and every
/// name verifies.
fn assert_no_dangling_roots(store: &Path) {
    let st = Store::open(store).unwrap();
    for key in st.disk().list("snapshots/").unwrap() {
        let d = root::parse_root_key(&key).unwrap();
        let r = st.load_root(&d).unwrap();
        for c in &r.chunks {
            assert!(
                st.has_chunk(c).unwrap(),
                "root {d} names chunk {c}, which the store lacks"
            );
        }
    }
    for (name, _) in st.list_refs().unwrap() {
        st.verify(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn named_checkpoint_restores_and_is_listed_inspected_and_removed() {
    let mut case = Case::start_with("mem_big", &["24"], &[]);
    let store = case.workdir().join("store");
    ok("checkpoint --to", &checkpoint(&case, &store, "big:v1", &[]));
    case.reap_source_killed();
    let ls = ok("snapshot ls", &snaprun(&store, &["snapshot", "ls"], &[]));
    assert!(ls.contains("big:v1"), "{ls}");
    let inspect = ok(
        "snapshot inspect",
        &snaprun(&store, &["snapshot", "inspect", "big:v1"], &[]),
    );
    assert!(
        inspect.contains("snapshot big:v1") && inspect.contains("distinct"),
        "{inspect}"
    );
    ok(
        "snapshot verify",
        &snaprun(&store, &["snapshot", "verify", "big:v1"], &[]),
    );
    restore_and_pass(&mut case, &store, "big:v1", &[]);
    ok(
        "snapshot rm",
        &snaprun(&store, &["snapshot", "rm", "big:v1"], &[]),
    );
    let gc = ok("snapshot gc", &snaprun(&store, &["snapshot", "gc"], &[]));
    assert!(gc.contains("kept 0 snapshots"), "{gc}");
    assert_eq!(stored_bytes(&store), 0);
    let out = snaprun(&store, &["restore", "--from", "big:v1"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot named big:v1"));
}

/// The bytes a checkpoint stored anew, from its `--timings` line.
fn new_bytes(out: &Output) -> u64 {
    let err = String::from_utf8_lossy(&out.stderr);
    let at = err
        .find("stored ")
        .unwrap_or_else(|| panic!("no 'stored' in: {err}"));
    err[at + 7..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad 'stored' figure in: {err}"))
}

#[test]
fn second_checkpoint_of_the_same_process_adds_little() {
    let mut case = Case::start_with("mem_big", &["64"], &[]);
    let store = case.workdir().join("store");
    let args = ["--leave-running", "--timings"];
    let out = checkpoint(&case, &store, "same:1", &args);
    ok("first checkpoint", &out);
    let first_new = new_bytes(&out);
    let first = stored_bytes(&store);
    let out = checkpoint(&case, &store, "same:2", &args);
    ok("second checkpoint", &out);
    let second_new = new_bytes(&out);
    let added = stored_bytes(&store) - first;
    assert!(
        first > 32 << 20,
        "first checkpoint stored only {first} bytes"
    );
    assert!(
        second_new * 20 <= first_new,
        "the second checkpoint stored {second_new} new bytes, the first {first_new} (> 5 %)"
    );
    assert!(
        added * 20 <= first,
        "the second checkpoint added {added} bytes to {first} (> 5 %)"
    );
    case.go();
    case.expect_pass(case.pid);
}

#[test]
fn two_processes_with_the_same_bytes_share_chunks() {
    let mut a = Case::start_with("mem_big", &["64"], &[]);
    let mut b = Case::start_with("mem_big", &["64"], &[]);
    let store = a.workdir().join("store");
    ok(
        "checkpoint a",
        &checkpoint(&a, &store, "twin:a", &["--leave-running"]),
    );
    let first = stored_bytes(&store);
    ok(
        "checkpoint b",
        &checkpoint(&b, &store, "twin:b", &["--leave-running"]),
    );
    let added = stored_bytes(&store) - first;
    assert!(
        added * 20 <= first,
        "a second process with the same 64 MiB added {added} bytes to {first} (> 5 %)"
    );
    for c in [&mut a, &mut b] {
        c.go();
        let pid = c.pid;
        c.expect_pass(pid);
    }
}

#[test]
fn kill_9_during_checkpoint_leaves_earlier_snapshots_whole() {
    let mut first = Case::start_with("mem_big", &["48"], &[]);
    let store = first.workdir().join("store");
    ok(
        "first checkpoint",
        &checkpoint(&first, &store, "keep:1", &[]),
    );
    first.reap_source_killed();
    let mut killed_mid_way = 0;
    for (i, delay_ms) in [1u64, 30, 80, 150, 300, 600].into_iter().enumerate() {
        let case = Case::start_with("mem_big", &["96"], &[]);
        let name = format!("keep:k{i}");
        let pid = case.pid.to_string();
        let mut child = Command::new(SNAPRUN)
            .args([
                "checkpoint",
                "--pid",
                &pid,
                "--to",
                &name,
                "--leave-running",
                "--store",
            ])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let done = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        child.wait().unwrap();
        if !done {
            killed_mid_way += 1;
        }
        // Whatever point it died at: every root is whole, keep:1 verifies.
        assert_no_dangling_roots(&store);
        drop(case);
    }
    assert!(
        killed_mid_way >= 3,
        "only {killed_mid_way} checkpoints were killed mid-way"
    );
    ok("gc after kills", &snaprun(&store, &["snapshot", "gc"], &[]));
    assert_no_dangling_roots(&store);
    assert!(std::fs::read_dir(store.join("tmp"))
        .unwrap()
        .next()
        .is_none());
    restore_and_pass(&mut first, &store, "keep:1", &[]);
}

#[test]
fn gc_beside_a_running_checkpoint_keeps_what_it_references() {
    let mut case = Case::start_with("mem_big", &["96"], &[]);
    let store = case.workdir().join("store");
    ok(
        "checkpoint a",
        &checkpoint(&case, &store, "gc:a", &["--leave-running"]),
    );
    // b's checkpoint references a's chunks (dedup); a's name goes and GC
    // runs while b's checkpoint is under way.
    let pid = case.pid.to_string();
    let b = Command::new(SNAPRUN)
        .args(["checkpoint", "--pid", &pid, "--to", "gc:b", "--store"])
        .arg(&store)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    ok("rm a", &snaprun(&store, &["snapshot", "rm", "gc:a"], &[]));
    let gc = snaprun(&store, &["snapshot", "gc"], &[]);
    let b_out = b.wait_with_output().unwrap();
    ok("checkpoint b", &b_out);
    ok("gc", &gc);
    case.reap_source_killed();
    assert_no_dangling_roots(&store);
    restore_and_pass(&mut case, &store, "gc:b", &[]);
}

#[test]
fn push_pull_and_restore_through_s3() {
    let s3 = S3Server::start();
    let env = s3.env();
    let remote = format!("s3://{BUCKET}/cli");
    let mut case = Case::start_with("mem_big", &["24"], &[]);
    let a = case.workdir().join("store-a");
    ok("checkpoint", &checkpoint(&case, &a, "web:v1", &[]));
    case.reap_source_killed();
    let push = ok(
        "push",
        &snaprun(
            &a,
            &["snapshot", "push", "web:v1", "--remote", &remote],
            &env,
        ),
    );
    let again = ok(
        "push again",
        &snaprun(
            &a,
            &["snapshot", "push", "web:v1", "--remote", &remote],
            &env,
        ),
    );
    assert!(
        again.contains(" 0 copied"),
        "a second push copied chunks: {again} (first: {push})"
    );
    // Another host: pull, then restore from its own store.
    let b = case.workdir().join("store-b");
    let pulled = ok(
        "pull",
        &snaprun(
            &b,
            &["snapshot", "pull", "web:v1", "--remote", &remote],
            &env,
        ),
    );
    assert!(!pulled.contains(" 0 copied"), "{pulled}");
    ok(
        "verify pulled",
        &snaprun(&b, &["snapshot", "verify", "web:v1"], &[]),
    );
    restore_and_pass(&mut case, &b, "web:v1", &[]);
    // A third host restores straight from S3, through an empty store.
    let c = case.workdir().join("store-c");
    restore_and_pass(&mut case, &c, "web:v1", &env);
    assert!(stored_bytes(&c) > 0, "the read did not fill the disk tier");
    // A corrupt pack in S3 and an empty store: restore fails naming the
    // tier, and no process is left.
    for p in s3.pack_files("cli") {
        let mut bytes = std::fs::read(&p).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x5a;
        std::fs::write(&p, bytes).unwrap();
    }
    let d = case.workdir().join("store-d");
    let out = snaprun(
        &d,
        &["restore", "--from", "web:v1", "--remote", &remote],
        &env,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        show_output("restore from a corrupt S3", &out)
    );
    assert!(
        err.contains(&format!("s3 s3://{BUCKET}/cli: corrupt")),
        "{err}"
    );
    assert!(err.contains("snapshot web:v1: chunk "), "{err}");
    case.assert_nothing_left("after a failed restore");
}
