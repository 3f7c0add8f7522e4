//! Failures must be clean: a damaged image is refused with a message and
//! leaves no process; a checkpoint that cannot be done names the resource
//! and leaves the source running.

mod common;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::process::{Command, Output};

use common::{file_len, proc_state, show_output, tracer_pid, Case, SNAPRUN};

/// Asserts the command failed with exit code 1 and a `snaprun: error:`
/// message, and returns stderr.
fn assert_error(case: &Case, what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}: {what} should fail with exit code 1\n{}",
        case.name,
        show_output(what, out)
    );
    assert!(
        stderr.contains("snaprun: error:"),
        "{}: {what}: stderr has no 'snaprun: error:'\n{}",
        case.name,
        show_output(what, out)
    );
    stderr
}

/// Checkpoints life_basic, lets `damage` spoil the image, and checks that
/// restore fails naming the problem (stderr contains one of `words`) and
/// leaves nothing behind.
fn damaged_image(damage: impl FnOnce(&std::path::Path), words: &[&str]) {
    damaged_image_of(Case::start("life_basic"), damage, words)
}

fn damaged_image_of(mut case: Case, damage: impl FnOnce(&std::path::Path), words: &[&str]) {
    case.checkpoint_ok();
    damage(&case.image());
    let out = case.restore(&[]);
    let stderr = assert_error(&case, "restore of a damaged image", &out).to_lowercase();
    assert!(
        words.iter().any(|w| stderr.contains(w)),
        "{}: the error does not say what is wrong (want one of {words:?})\n{}",
        case.name,
        show_output("restore", &out)
    );
    case.assert_nothing_left("after a failed restore");
}

const CORRUPT_WORDS: &[&str] = &[
    "corrupt",
    "digest",
    "checksum",
    "hash",
    "mismatch",
    "blake3",
    "truncated",
    "pages.img",
];

/// The largest pack file of the image directory (`packs/<id>.pack`, see
/// docs/store.md): where the page data is.
fn pages_file(img: &std::path::Path) -> std::path::PathBuf {
    fs::read_dir(img.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .max_by_key(|p| file_len(p))
        .expect("the image has a pack file")
}

/// One byte flipped in the middle of the pages file.
#[test]
fn corrupt_page_byte_is_refused() {
    damaged_image(flip_middle_byte, CORRUPT_WORDS);
}

/// The same in a 64 MiB image, which several restorer threads write at
/// once: the first error stops them all and the stub is killed.
#[test]
fn corrupt_page_in_a_large_image_is_refused() {
    damaged_image_of(
        Case::start_with("mem_big", &["64"], &[]),
        flip_middle_byte,
        CORRUPT_WORDS,
    );
}

fn flip_middle_byte(img: &std::path::Path) {
    let path = pages_file(img);
    let len = file_len(&path);
    assert!(len > 0, "pages.img is empty");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(len / 2)).unwrap();
    f.write_all(&b).unwrap();
}

/// pages.img cut to half its length.
#[test]
fn truncated_pages_are_refused() {
    damaged_image(
        |img| {
            let path = pages_file(img);
            let len = file_len(&path);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        },
        CORRUPT_WORDS,
    );
}

/// manifest.json cut to half its length.
#[test]
fn truncated_manifest_is_refused() {
    damaged_image(
        |img| {
            let path = img.join("manifest.json");
            let len = file_len(&path);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        },
        &["manifest"],
    );
}

/// manifest.json with garbage in the middle.
#[test]
fn garbled_manifest_is_refused() {
    damaged_image(
        |img| {
            let path = img.join("manifest.json");
            let mut bytes = fs::read(&path).unwrap();
            let mid = bytes.len() / 2;
            let end = (mid + 16).min(bytes.len());
            bytes[mid..end].fill(b'#');
            fs::write(&path, bytes).unwrap();
        },
        &["manifest"],
    );
}

/// A pid that does not exist: exit 1, the message names the pid.
#[test]
fn checkpoint_of_missing_pid_fails() {
    // A pid that existed a moment ago and is now free.
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SNAPRUN)
        .args(["checkpoint", "--pid", &pid.to_string(), "--image-path"])
        .arg(dir.path().join("img"))
        .output()
        .expect("run snaprun");
    let text = show_output("snaprun checkpoint of a missing pid", &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(stderr.contains("snaprun: error:"), "{text}");
    assert!(
        stderr.contains(&format!("pid {pid}")),
        "the message does not name pid {pid}\n{text}"
    );
    assert!(
        !dir.path().join("img/manifest.json").exists(),
        "a failed checkpoint left a manifest"
    );
}

/// Checkpoints the case's program, which holds something snaprun cannot
/// restore, and asserts the refusal: exit 1 with an error naming the pid
/// and every one of `words`; the source running on, untraced and not
/// stopped; no manifest. `words` gets the source's pid. Then lets the program check itself (it PASSes
/// only if what it held is still as it was).
fn refused_and_source_runs_on(program: &str, what: &str, words: impl Fn(i32) -> Vec<String>) {
    let mut case = Case::start(program);
    let out = case.checkpoint(&[]);
    let stderr = assert_error(&case, what, &out);
    let pid = format!("pid {}", case.pid);
    for w in words(case.pid).iter().chain([&pid]) {
        assert!(
            stderr.contains(w.as_str()),
            "the message does not name {w:?}\n{}",
            show_output("checkpoint", &out)
        );
    }
    assert!(
        case.source_running(),
        "the source died after a failed checkpoint"
    );
    assert_eq!(tracer_pid(case.pid), Some(0), "the source is still traced");
    let state = proc_state(case.pid);
    assert!(
        !matches!(state, Some('t') | Some('T')),
        "the source is left stopped (state {state:?})"
    );
    assert!(
        !case.image().join("manifest.json").exists(),
        "a failed checkpoint left a manifest"
    );
    case.go();
    case.expect_pass(case.pid);
}

/// A process holding a userfaultfd (42): checkpoint refuses it naming
/// "fd 42" and "userfaultfd", and the source runs on and PASSes.
#[test]
fn checkpoint_of_userfaultfd_fails_and_source_runs_on() {
    refused_and_source_runs_on(
        "fd_userfaultfd",
        "checkpoint of a process with a userfaultfd",
        |_| vec!["fd 42".into(), "userfaultfd".into()],
    );
}

/// File locks cannot be restored yet: checkpoint refuses the first one,
/// naming the pid, the fd and the lock, and the process runs on holding
/// both of its locks.
#[test]
fn checkpoint_of_a_process_holding_file_locks_fails_and_source_runs_on() {
    refused_and_source_runs_on(
        "fd_flock",
        "checkpoint of a process holding file locks",
        |pid| vec![format!("pid {pid} fd 42: a file lock (1: FLOCK")],
    );
}

/// A seccomp filter cannot be restored yet: checkpoint says so, naming the
/// pid, and the process runs on with its filter.
#[test]
fn checkpoint_of_a_seccomp_filtered_process_fails_and_source_runs_on() {
    refused_and_source_runs_on(
        "proc_seccomp",
        "checkpoint of a process with a seccomp filter",
        |_| vec!["seccomp".into()],
    );
}
