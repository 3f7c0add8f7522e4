//! The Python inference server restored lazily: the same vectors as before
//! the checkpoint, the request counter goes on; the first lazy restore
//! records what the first request needed (the window closed by a SIGUSR1
//! to the pager right after the answer), the second pushes it and faults
//! far less before its answer.

mod common;
mod lazy_support;
mod workload;

use std::time::Duration;

use lazy_support::{lazy_args, pager_pid_from, wait_pager_done, wait_stats};
use snaprun_snapshot::pager::stats::Window;
use workload::{embed, wait_embed, Server};

const TEXTS: &[&str] = &[
    "snaprun restores a warmed inference process.",
    "The quick brown fox jumps over the lazy dog.",
];

/// Restores lazily, checks the first answer, closes the recording window
/// at it, waits for the pager to bring in the rest; returns the window.
fn lazy_round(server: &mut Server, want: &[Vec<f64>], count: u64, what: &str) -> Window {
    let dir = server.dir().to_path_buf();
    let _ = std::fs::remove_file(lazy_support::stats_path(&dir));
    // The window stays open until the SIGUSR1 (a debug build's first
    // answer can take seconds: every chunk is hashed unoptimized).
    let args = lazy_args(&dir, &["--ws-window", "60000"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (pid, out) = server.restore(&args);
    let pager = pager_pid_from(&out);
    let got = wait_embed(server.port, TEXTS, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{what}: /embed: {e}\n{}", server.log()));
    // SAFETY: kill(2) with integers on the pager this restore started.
    unsafe { libc::kill(pager as i32, libc::SIGUSR1) };
    assert_eq!(got.vectors, want, "{what}: different embeddings");
    assert_eq!(got.count, count + 1, "{what}: the counter did not continue");
    let s = wait_stats(&dir, Duration::from_secs(10), |s| s.window.is_some());
    let w = s.window.clone().unwrap();
    // Closed by the signal, or earlier because every page was in (no
    // fault can come after that).
    assert!(
        w.closed_by == "signal" || w.closed_by == "complete",
        "{what}: {s:?}"
    );
    let done = wait_pager_done(&dir);
    // Every page in: a second request still answers the same.
    let again = embed(server.port, TEXTS).expect("/embed after the pager ended");
    assert_eq!(again.vectors, want, "{what}: after every page is in");
    eprintln!(
        "{what}: {} faults ({} bytes) before the first answer, {} bytes pushed before the resume, {} bytes streamed after at {:.2} GB/s",
        w.faults, w.fault_bytes, done.ws_pushed_bytes, done.streamed_bytes, done.stream_gbps
    );
    server.kill_restored(pid);
    w
}

#[test]
fn python_server_lazily_restored_answers_the_same_and_reuses_its_working_set() {
    let mut server = Server::start(&["--size-mb", "64"]);
    let port = server.port;
    let want = embed(port, TEXTS)
        .unwrap_or_else(|e| panic!("cold /embed: {e}\n{}", server.log()))
        .vectors;
    let count = embed(port, &["warm-up"]).expect("warm-up").count;
    server.checkpoint(&[]);

    let first = lazy_round(&mut server, &want, count, "lazy, recording");
    assert!(first.faults > 0, "{first:?}");
    let second = lazy_round(&mut server, &want, count, "lazy, working set pushed");
    assert_ne!(
        first.closed_by, "complete",
        "streaming is held while recording"
    );
    assert!(
        second.faults * 2 < first.faults,
        "faults before the first answer: {} with the working set, {} without",
        second.faults,
        first.faults
    );
}
