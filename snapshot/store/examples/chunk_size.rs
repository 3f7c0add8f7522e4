//! Measures what the chunk size and zstd level cost, on a real file (e.g. a
//! model's weights): write throughput and ratio, full-read throughput, and
//! the latency of one chunk read (what a lazy page fault waits on).
//!
//!   cargo run --release -p snaprun-store --example chunk_size -- FILE

use std::sync::Arc;
use std::time::Instant;

use snaprun_store::{RefName, SnapshotWriter, Store, StoreOptions};

fn main() {
    let path = std::env::args().nth(1).expect("usage: chunk_size FILE");
    let data = std::fs::read(&path).expect("read the file");
    let mib = data.len() as f64 / (1 << 20) as f64;
    println!("{path}: {mib:.1} MiB");
    println!("chunk   level  write MiB/s  ratio  read MiB/s  one-chunk read us");
    for (cs, level) in [
        (64 << 10, 1),
        (256 << 10, 1),
        (1 << 20, 1),
        (4 << 20, 1),
        (1 << 20, 3),
        (1 << 20, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            chunk_size: cs,
            level,
            ram_bytes: 0,
            ..Default::default()
        };
        let store = Arc::new(Store::open_with(dir.path(), opts.clone()).unwrap());
        let t = Instant::now();
        let mut w = SnapshotWriter::new(store.clone()).unwrap();
        let refs = w.add(0, &data).unwrap();
        let stats = w.stats();
        w.commit(b"{}", Some(&"m:1".parse::<RefName>().unwrap()))
            .unwrap();
        let write = mib / t.elapsed().as_secs_f64();
        drop(store);
        let store = Store::open_with(dir.path(), opts).unwrap();
        let t = Instant::now();
        let mut out = Vec::with_capacity(data.len());
        store.read_chunks(&refs, &mut out, "m:1").unwrap();
        let read = mib / t.elapsed().as_secs_f64();
        assert_eq!(out, data);
        // One chunk at a time, from the middle of the file.
        let mid = &refs[refs.len() / 2..][..(refs.len() / 2).min(16)];
        let t = Instant::now();
        for c in mid {
            store.read_chunk(c, "m:1").unwrap();
        }
        let one = t.elapsed().as_secs_f64() * 1e6 / mid.len() as f64;
        println!(
            "{:>5}K  {level:>5}  {write:>11.0}  {:>5.3}  {read:>10.0}  {one:>17.0}",
            cs >> 10,
            stats.stored_bytes as f64 / stats.new_bytes.max(1) as f64
        );
    }
}
