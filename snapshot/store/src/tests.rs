//! Store tests on real files: round trips, dedup, zero chunks, integrity
//! errors per tier, fall-through and fill, GC, crash leftovers.

use std::sync::Arc;
use std::time::Duration;

use crate::tier::{DiskTier, Tier};
use crate::{
    chunk, gc, ChunkRef, Digest, RefName, SnapshotWriter, Store, StoreError, StoreOptions,
};

pub(crate) fn opts() -> StoreOptions {
    StoreOptions {
        ram_bytes: 64 << 20,
        chunk_size: 64 << 10,
        ..Default::default()
    }
}

/// Bytes that compress somewhat and differ per seed.
pub(crate) fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&(x % 1000).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn name(s: &str) -> RefName {
    s.parse().unwrap()
}

/// Writes `parts` as one snapshot and returns each part's chunks.
fn write(store: &Arc<Store>, n: &str, parts: &[&[u8]]) -> Vec<Vec<ChunkRef>> {
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    let refs = parts.iter().map(|p| w.add(0, p).unwrap()).collect();
    w.commit(b"{\"manifest\":true}", Some(&name(n))).unwrap();
    refs
}

fn read(store: &Store, chunks: &[ChunkRef]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    store.read_chunks(chunks, &mut out, "test:1")?;
    Ok(out)
}

/// Flips one byte in every pack file of a disk store.
fn corrupt_packs(dir: &std::path::Path) {
    for e in std::fs::read_dir(dir.join("packs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut b = std::fs::read(&p).unwrap();
            let n = b.len();
            b[n - 10] ^= 0xff;
            std::fs::write(&p, b).unwrap();
        }
    }
}

#[test]
fn round_trip_with_zero_chunks_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let mut a = data(1, 1 << 20);
    a[200_000..400_000].fill(0);
    let zeros = vec![0u8; 256 << 10];
    let refs = write(&store, "a:1", &[&a, &zeros, &a]);
    assert_eq!(read(&store, &refs[0]).unwrap(), a);
    assert_eq!(read(&store, &refs[1]).unwrap(), zeros);
    assert!(refs[1].iter().all(|c| c.digest.is_none()));
    assert_eq!(refs[0], refs[2]);
    // A second snapshot of the same bytes stores nothing new.
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    w.add(0, &a).unwrap();
    let stats = w.stats();
    assert_eq!(stats.new_bytes, 0);
    assert_eq!(stats.dedup_bytes + stats.zero_bytes, a.len() as u64);
    w.commit(b"{}", Some(&name("a:2"))).unwrap();
    // Reopened from disk: the names and the bytes are there.
    drop(store);
    let store = Store::open_with(dir.path(), opts()).unwrap();
    let (_, root) = store.open_snapshot(&name("a:1")).unwrap();
    assert_eq!(root.manifest, b"{\"manifest\":true}");
    assert_eq!(read(&store, &refs[0]).unwrap(), a);
    assert_eq!(store.list_refs().unwrap().len(), 2);
    assert!(store.verify(&name("a:2")).unwrap() > 0);
}

#[test]
fn chunks_align_to_the_mapping_offset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let cs = opts().chunk_size;
    let a = data(7, 8 * cs);
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    w.add(0, &a).unwrap();
    // The same bytes starting two chunks later in a mapping, read from a
    // chunk boundary: all chunks are already known.
    let b = w.add(2 * cs as u64, &a[2 * cs..]).unwrap();
    assert_eq!(b.len(), 6);
    assert_eq!(w.stats().new_bytes, a.len() as u64);
    w.commit(b"{}", None).unwrap();
}

#[test]
fn corrupt_and_missing_chunks_name_snapshot_digest_and_tier() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let a = data(2, 100_000);
    let refs = write(&store, "a:1", &[&a]);
    let digest = refs[0].iter().find_map(|c| c.digest).unwrap();
    // Disk: a flipped byte in the pack.
    let fresh = Store::open_with(dir.path(), opts()).unwrap();
    corrupt_packs(dir.path());
    let err = read(&fresh, &refs[0]).unwrap_err().to_string();
    assert!(err.contains("snapshot test:1"), "{err}");
    assert!(
        err.contains(&digest.to_string()) || err.contains("chunk "),
        "{err}"
    );
    assert!(
        err.contains(&format!("disk {}", dir.path().display())),
        "{err}"
    );
    assert!(err.contains("corrupt"), "{err}");
    // Disk: the pack is gone.
    for e in std::fs::read_dir(dir.path().join("packs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let fresh = Store::open_with(dir.path(), opts()).unwrap();
    let err = read(&fresh, &refs[0]).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    // A chunk no tier indexes.
    let unknown = ChunkRef {
        len: 10,
        digest: Some(Digest::of(b"nowhere")),
    };
    let err = fresh.read_chunk(&unknown, "x:y").unwrap_err().to_string();
    assert!(err.contains("snapshot x:y"), "{err}");
    assert!(err.contains(&Digest::of(b"nowhere").to_string()), "{err}");
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn ram_tier_corruption_falls_through_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let a = data(3, 64 << 10);
    let refs = write(&store, "a:1", &[&a]);
    let c = &refs[0][0];
    let key = format!("chunks/{}", c.digest.unwrap());
    // The read filled RAM with the verified chunk; now damage that copy.
    assert_eq!(read(&store, &refs[0]).unwrap(), a);
    assert!(store.ram().has(&key).unwrap());
    store.ram().put(&key, &vec![1u8; a.len()]).unwrap();
    assert_eq!(read(&store, &refs[0]).unwrap(), a);
    // RAM and disk both bad: the error names both tiers.
    store.ram().put(&key, &vec![1u8; a.len()]).unwrap();
    corrupt_packs(dir.path());
    let err = read(&store, &refs[0]).unwrap_err().to_string();
    assert!(err.contains("ram: corrupt"), "{err}");
    assert!(err.contains("disk "), "{err}");
}

#[test]
fn reads_fall_through_to_a_remote_and_fill_disk_and_ram() {
    let remote_dir = tempfile::tempdir().unwrap();
    let home_dir = tempfile::tempdir().unwrap();
    let remote: Arc<dyn Tier> = Arc::new(DiskTier::open(remote_dir.path()).unwrap());
    // The snapshot is written into one store and pushed to the remote.
    let src_dir = tempfile::tempdir().unwrap();
    let src = Arc::new(Store::open_with(src_dir.path(), opts()).unwrap());
    let a = data(4, 500_000);
    let refs = write(&src, "a:1", &[&a]);
    let report = crate::push(&src, &name("a:1"), remote.clone()).unwrap();
    assert!(report.copied_chunks > 0);
    assert_eq!(
        crate::push(&src, &name("a:1"), remote.clone())
            .unwrap()
            .copied_chunks,
        0
    );

    let mut home = Store::open_with(home_dir.path(), opts()).unwrap();
    home.add_remote(remote);
    assert_eq!(
        home.resolve(&name("a:1")).unwrap(),
        src.resolve(&name("a:1")).unwrap()
    );
    let d = refs[0][0].digest.unwrap();
    assert!(!home.has_chunk(&d).unwrap());
    assert_eq!(read(&home, &refs[0]).unwrap(), a);
    assert!(home.ram().has(&format!("chunks/{d}")).unwrap());
    home.flush().unwrap();
    assert!(home.has_chunk(&d).unwrap());
    // Without the remote, the filled disk tier alone serves every chunk.
    drop(home);
    let alone = Store::open_with(home_dir.path(), opts()).unwrap();
    assert_eq!(read(&alone, &refs[0]).unwrap(), a);
    // Corrupt remote + empty home: the error names the remote tier.
    let fresh_dir = tempfile::tempdir().unwrap();
    corrupt_packs(remote_dir.path());
    let mut fresh = Store::open_with(fresh_dir.path(), opts()).unwrap();
    fresh.add_remote(Arc::new(DiskTier::open(remote_dir.path()).unwrap()));
    let err = read(&fresh, &refs[0]).unwrap_err().to_string();
    assert!(
        err.contains(&format!("disk {}: missing", fresh_dir.path().display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("disk {}: corrupt", remote_dir.path().display())),
        "{err}"
    );
}

#[test]
fn gc_removes_only_unreferenced_chunks_and_repacks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let shared = data(5, 300_000);
    let only_a = data(6, 300_000);
    let only_b = data(8, 300_000);
    let ra = write(&store, "a:1", &[&shared, &only_a]);
    let rb = write(&store, "b:1", &[&shared, &only_b]);
    let before = store.disk().list("packs/").unwrap();
    store.remove_ref(&name("a:1")).unwrap();
    let report = gc(&store).unwrap();
    assert_eq!(report.kept_snapshots, 1);
    assert_eq!(report.removed_roots, 1);
    assert!(
        report.removed_packs + report.repacked_packs > 0,
        "{report:?}"
    );
    assert!(report.freed_bytes > 0);
    assert_ne!(store.disk().list("packs/").unwrap(), before);
    // b is whole; a's own chunks are gone, the shared ones kept.
    assert_eq!(read(&store, &rb[0]).unwrap(), shared);
    assert_eq!(read(&store, &rb[1]).unwrap(), only_b);
    let fresh = Store::open_with(dir.path(), opts()).unwrap();
    assert!(read(&fresh, &ra[1]).is_err());
    assert_eq!(read(&fresh, &ra[0]).unwrap(), shared);
    // Nothing left to collect.
    let again = gc(&store).unwrap();
    assert_eq!(
        (
            again.removed_packs,
            again.repacked_packs,
            again.removed_roots
        ),
        (0, 0, 0)
    );
}

#[test]
fn gc_waits_for_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let a = data(9, 400_000);
    let ra = write(&store, "a:1", &[&a]);
    // A writer starts and references a's chunks without storing them.
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    let rb = w.add(0, &a).unwrap();
    assert_eq!(w.stats().new_bytes, 0);
    // a is removed and GC runs while the writer is still open.
    store.remove_ref(&name("a:1")).unwrap();
    let gc_store = store.clone();
    let gc_thread = std::thread::spawn(move || gc(&gc_store).unwrap());
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !gc_thread.is_finished(),
        "gc ran while a writer held the store"
    );
    w.commit(b"{}", Some(&name("b:1"))).unwrap();
    let report = gc_thread.join().unwrap();
    assert_eq!(report.kept_snapshots, 1);
    // b's chunks survived: they are a's, which no ref named when GC began.
    let fresh = Store::open_with(dir.path(), opts()).unwrap();
    assert_eq!(read(&fresh, &rb).unwrap(), a);
    assert_eq!(rb, ra[0]);
}

#[test]
fn an_abandoned_writer_leaves_earlier_snapshots_and_gc_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions {
        chunk_size: 1 << 20,
        level: 0,
        ..opts()
    };
    let store = Arc::new(Store::open_with(dir.path(), o.clone()).unwrap());
    let a = data(10, 2 << 20);
    let ra = write(&store, "a:1", &[&a]);
    // A writer that seals a pack or two and then dies before its root.
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    w.add(0, &data(11, 40 << 20)).unwrap();
    assert!(w.stats().packs >= 1);
    drop(w);
    // An orphan pack (no index) and a stray temporary file.
    let orphan = format!("packs/{}.pack", Digest::of(b"orphan"));
    store.disk().put(&orphan, b"orphan").unwrap();
    std::fs::write(dir.path().join("tmp/stray"), b"x").unwrap();
    let fresh = Store::open_with(dir.path(), o.clone()).unwrap();
    assert_eq!(read(&fresh, &ra[0]).unwrap(), a);
    let report = gc(&store).unwrap();
    assert!(report.removed_packs >= 2, "{report:?}");
    assert!(!store.disk().has(&orphan).unwrap());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
    assert_eq!(
        read(&Store::open_with(dir.path(), o).unwrap(), &ra[0]).unwrap(),
        a
    );
}

#[test]
fn zero_chunks_are_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open_with(dir.path(), opts()).unwrap());
    let mut w = SnapshotWriter::new(store.clone()).unwrap();
    let refs = w.add(0, &vec![0u8; 1 << 20]).unwrap();
    assert!(refs.iter().all(|c| c.digest.is_none()));
    assert_eq!(w.stats().zero_bytes, 1 << 20);
    assert_eq!(w.stats().packs, 0);
    w.commit(b"{}", None).unwrap();
    assert!(store.disk().list("packs/").unwrap().is_empty());
    assert_eq!(
        chunk::split(0, 1 << 20, opts().chunk_size).len(),
        refs.len()
    );
}

#[test]
fn a_corrupt_raw_chunk_is_caught_by_its_digest() {
    // Stored raw, a flipped byte decodes fine: only the digest catches it.
    let dir = tempfile::tempdir().unwrap();
    let o = StoreOptions { level: 0, ..opts() };
    let store = Arc::new(Store::open_with(dir.path(), o.clone()).unwrap());
    let a = data(12, 64 << 10);
    let refs = write(&store, "raw:1", &[&a]);
    corrupt_packs(dir.path());
    let fresh = Store::open_with(dir.path(), o).unwrap();
    let err = read(&fresh, &refs[0]).unwrap_err().to_string();
    assert!(err.contains("content does not match its digest"), "{err}");
    assert!(
        err.contains(&refs[0][0].digest.unwrap().to_string()),
        "{err}"
    );
}
