//! The S3 tier against a real S3-compatible server (s3s-fs, installed by
//! scripts/setup.sh) started on loopback by this harness.

use std::path::Path;
use std::sync::Arc;

use snaprun_store::testing::{S3Server, BUCKET};
use snaprun_store::tier::Tier;
use snaprun_store::{pull, push, ChunkRef, RefName, SnapshotWriter, Store, StoreOptions};

const PREFIX: &str = "ci/store";

fn opts() -> StoreOptions {
    StoreOptions {
        chunk_size: 64 << 10,
        ..Default::default()
    }
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            if i % 4096 == 0 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
            }
            (x >> ((i % 8) * 8)) as u8 ^ (i / 4096) as u8
        })
        .collect()
}

fn name() -> RefName {
    "model:v1".parse().unwrap()
}

/// Writes one snapshot of `bytes` into a store at `dir`.
fn snapshot(dir: &Path, bytes: &[u8]) -> (Arc<Store>, Vec<ChunkRef>) {
    let store = Arc::new(Store::open_with(dir, opts()).unwrap());
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    let refs = w.add(0, bytes).unwrap();
    w.commit(b"{\"m\":1}", Some(&name())).unwrap();
    (store, refs)
}

fn read(store: &Store, refs: &[ChunkRef]) -> Result<Vec<u8>, snaprun_store::StoreError> {
    let mut out = Vec::new();
    store.read_chunks(refs, &mut out, "model:v1")?;
    Ok(out)
}

#[test]
fn s3_round_trip_moves_only_missing_chunks() {
    let s3 = S3Server::start();
    let a_dir = tempfile::tempdir().unwrap();
    let bytes = data(1, 3 << 20);
    let (a, refs) = snapshot(a_dir.path(), &bytes);
    let first = push(&a, &name(), s3.tier(PREFIX)).unwrap();
    assert!(
        first.copied_chunks > 0 && first.copied_bytes > 0,
        "{first:?}"
    );
    assert_eq!(push(&a, &name(), s3.tier(PREFIX)).unwrap().copied_chunks, 0);

    let b_dir = tempfile::tempdir().unwrap();
    let b = Store::open_with(b_dir.path(), opts()).unwrap();
    let pulled = pull(&b, &name(), s3.tier(PREFIX)).unwrap();
    assert_eq!(pulled.copied_chunks, first.copied_chunks);
    assert_eq!(b.resolve(&name()).unwrap(), a.resolve(&name()).unwrap());
    assert_eq!(b.open_snapshot(&name()).unwrap().1.manifest, b"{\"m\":1}");
    assert_eq!(read(&b, &refs).unwrap(), bytes);
    assert_eq!(pull(&b, &name(), s3.tier(PREFIX)).unwrap().copied_chunks, 0);

    // A second snapshot sharing half its bytes pushes only the new half.
    let mut more = bytes[..bytes.len() / 2].to_vec();
    more.extend(data(2, bytes.len() / 2));
    let mut w = SnapshotWriter::new(a.clone()).unwrap();
    w.add(0, &more).unwrap();
    w.commit(b"{}", Some(&"model:v2".parse().unwrap())).unwrap();
    let second = push(&a, &"model:v2".parse().unwrap(), s3.tier(PREFIX)).unwrap();
    assert!(second.copied_chunks * 2 <= second.chunks + 1, "{second:?}");
}

#[test]
fn s3_reads_fall_through_fill_and_report_corrupt_and_missing_chunks() {
    let s3 = S3Server::start();
    let a_dir = tempfile::tempdir().unwrap();
    let bytes = data(3, 1 << 20);
    let (a, refs) = snapshot(a_dir.path(), &bytes);
    push(&a, &name(), s3.tier(PREFIX)).unwrap();

    // An empty home with S3 behind it: reads fall through and fill.
    let home_dir = tempfile::tempdir().unwrap();
    let mut home = Store::open_with(home_dir.path(), opts()).unwrap();
    home.add_remote(s3.tier(PREFIX));
    assert_eq!(home.resolve(&name()).unwrap(), a.resolve(&name()).unwrap());
    let d = refs[0].digest.unwrap();
    assert!(!home.has_chunk(&d).unwrap());
    assert_eq!(read(&home, &refs).unwrap(), bytes);
    assert!(home.ram().has(&format!("chunks/{d}")).unwrap());
    home.flush().unwrap();
    assert!(home.has_chunk(&d).unwrap());
    drop(home);

    // Corrupt in S3: a fresh home reports the S3 tier and the digest.
    let packs = s3.pack_files(PREFIX);
    assert!(!packs.is_empty());
    for p in &packs {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len();
        b[n - 100] ^= 0x55;
        std::fs::write(p, b).unwrap();
    }
    let fresh_dir = tempfile::tempdir().unwrap();
    let mut fresh = Store::open_with(fresh_dir.path(), opts()).unwrap();
    fresh.add_remote(s3.tier(PREFIX));
    let err = read(&fresh, &refs).unwrap_err().to_string();
    assert!(err.contains("snapshot model:v1: chunk "), "{err}");
    assert!(
        err.contains(&format!("s3 s3://{BUCKET}/{PREFIX}: corrupt")),
        "{err}"
    );
    // The filled disk tier still serves every chunk without S3.
    let filled = Store::open_with(home_dir.path(), opts()).unwrap();
    assert_eq!(read(&filled, &refs).unwrap(), bytes);

    // Missing in S3.
    for p in &packs {
        std::fs::remove_file(p).unwrap();
    }
    let gone_dir = tempfile::tempdir().unwrap();
    let mut gone = Store::open_with(gone_dir.path(), opts()).unwrap();
    gone.add_remote(s3.tier(PREFIX));
    let err = read(&gone, &refs).unwrap_err().to_string();
    assert!(
        err.contains(&format!("s3 s3://{BUCKET}/{PREFIX}: missing")),
        "{err}"
    );
    assert!(
        err.contains(&d.to_string()) || err.contains("chunk "),
        "{err}"
    );
}

#[test]
fn s3_objects_round_trip_through_the_tier() {
    let s3 = S3Server::start();
    let t = s3.tier(PREFIX);
    assert_eq!(t.get("refs/a/b").unwrap(), None);
    assert!(!t.has("refs/a/b").unwrap());
    t.put("refs/a/b", b"0123456789").unwrap();
    assert!(t.has("refs/a/b").unwrap());
    assert_eq!(t.get("refs/a/b").unwrap().unwrap(), b"0123456789");
    assert_eq!(t.get_range("refs/a/b", 3, 4).unwrap().unwrap(), b"3456");
    assert!(t.get_range("refs/a/b", 8, 4).is_err());
    assert_eq!(t.list("refs/").unwrap(), vec!["refs/a/b"]);
    t.delete("refs/a/b").unwrap();
    assert!(!t.has("refs/a/b").unwrap());
}

#[test]
fn s3_transient_errors_are_retried_with_backoff() {
    // A port with nothing on it yet: connections are refused until the
    // server starts there, a moment after the first request.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let tier =
        snaprun_store::tier::S3Tier::new(snaprun_store::testing::config(&endpoint, PREFIX, 10))
            .unwrap();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        S3Server::start_on(port)
    });
    let t = std::time::Instant::now();
    tier.put("refs/retry/v1", b"after retries").unwrap();
    let server = starter.join().unwrap();
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(
        tier.get("refs/retry/v1").unwrap().unwrap(),
        b"after retries"
    );
    drop(server);
    // With one attempt, a refused connection is an error naming the tier.
    let once =
        snaprun_store::tier::S3Tier::new(snaprun_store::testing::config(&endpoint, PREFIX, 1))
            .unwrap();
    let err = once.get("refs/retry/v1").unwrap_err().to_string();
    assert!(err.contains(&format!("s3 s3://snaps/{PREFIX}")), "{err}");
}
