//! The Python inference server (ThreadingHTTPServer + heartbeat thread +
//! OpenBLAS pool, MiniLM in numpy) checkpointed and restored: same vectors,
//! the request counter continues, the heartbeat thread runs again; twice
//! from one snapshot; 20 times in a row (`SNAPRUN_PY_ROUNDS` changes that).

mod common;
mod workload;

use std::thread::sleep;
use std::time::Duration;

use workload::{embed, health, wait_embed, Server};

const TEXTS: &[&str] = &[
    "snaprun restores a warmed inference process.",
    "The quick brown fox jumps over the lazy dog.",
];

fn heartbeats(port: u16) -> u64 {
    health(port).expect("/health")["heartbeats"]
        .as_u64()
        .expect("heartbeats")
}

fn one_round(round: usize) {
    let mut server = Server::start(&[]);
    let port = server.port;
    let want = embed(port, TEXTS).unwrap_or_else(|e| panic!("cold /embed: {e}\n{}", server.log()));
    embed(port, &["warm-up"]).expect("warm-up");
    let h = health(port).expect("/health");
    let count = h["requests"].as_u64().unwrap();
    let threads = h["threads"].as_u64().unwrap();
    assert!(threads >= 2, "round {round}: server has {threads} threads");
    let beats = heartbeats(port);

    server.checkpoint(&[]);
    for again in 0..2 {
        let what = format!("round {round}, restore {}", again + 1);
        let (pid, _) = server.restore(&[]);
        assert_eq!(pid, server.pid, "{what}: restored under another pid");
        let got = wait_embed(port, TEXTS, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{what}: /embed: {e}\n{}", server.log()));
        assert_eq!(got.vectors, want.vectors, "{what}: different embeddings");
        assert_eq!(got.count, count + 1, "{what}: the counter did not continue");
        let h = health(port).expect("/health");
        assert_eq!(h["pid"].as_i64(), Some(pid as i64), "{what}");
        let b1 = h["heartbeats"].as_u64().unwrap();
        assert!(
            b1 >= beats,
            "{what}: heartbeats went back from {beats} to {b1}"
        );
        sleep(Duration::from_millis(200));
        let b2 = heartbeats(port);
        assert!(
            b2 > b1,
            "{what}: the heartbeat thread is not running ({b1} then {b2} 200 ms later)"
        );
        server.kill_restored(pid);
    }
}

#[test]
fn python_server_restored_twice_20_rounds() {
    let rounds = std::env::var("SNAPRUN_PY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        one_round(round);
    }
    eprintln!("{rounds} rounds passed");
}
