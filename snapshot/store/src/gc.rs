//! Garbage collection of the home disk tier.
//!
//! Protocol: GC takes the store lock exclusive, so it starts only when no
//! writer (checkpoint, pull, fill) holds it shared and no writer starts
//! until it ends. Under the lock it marks every chunk that a root named by
//! a ref lists, then sweeps: roots no ref names, packs with no live chunk,
//! packs without an index (a writer died between the two puts), and
//! temporary files. A pack with some dead chunks is rewritten with only the
//! live ones (new pack and index put first, old index and pack removed
//! after), so a crash during GC loses nothing live.

use std::collections::HashSet;

use crate::lock::StoreLock;
use crate::pack::{self, PackBuilder};
use crate::root::{self, Root};
use crate::store::list_refs;
use crate::tier::Tier;
use crate::{Digest, Store, StoreError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub kept_snapshots: usize,
    pub kept_chunks: usize,
    pub removed_roots: usize,
    pub removed_packs: usize,
    pub repacked_packs: usize,
    /// Bytes of pack files removed, less what repacking wrote.
    pub freed_bytes: u64,
}

/// Collects the home tier, waiting for running writers first.
pub fn gc(store: &Store) -> Result<GcReport, StoreError> {
    // Filled chunks are written now: flush takes the lock shared itself.
    store.flush()?;
    let _lock = StoreLock::acquire(store.dir(), true)?;
    let disk = store.disk();
    let mut report = GcReport::default();

    let mut live_roots = HashSet::new();
    let mut live = HashSet::new();
    for (name, digest) in list_refs(disk)? {
        // A root that cannot be read stops GC: never delete on a doubt.
        let bytes = disk
            .get(&root::root_key(&digest))?
            .ok_or_else(|| StoreError::BadRoot {
                tier: disk.name(),
                digest,
                reason: format!("missing, but {name} names it"),
            })?;
        let r = Root::decode(&digest, &bytes).map_err(|reason| StoreError::BadRoot {
            tier: disk.name(),
            digest,
            reason,
        })?;
        live.extend(r.chunks);
        live_roots.insert(digest);
    }
    report.kept_snapshots = live_roots.len();
    report.kept_chunks = live.len();

    for key in disk.list("snapshots/")? {
        if root::parse_root_key(&key).is_some_and(|d| !live_roots.contains(&d)) {
            disk.delete(&key)?;
            report.removed_roots += 1;
        }
    }

    let keys = disk.list("packs/")?;
    let indexed: HashSet<Digest> = keys
        .iter()
        .filter_map(|k| pack::parse_index_key(k))
        .collect();
    for key in &keys {
        if let Some(id) = pack::parse_pack_key(key) {
            if !indexed.contains(&id) {
                report.freed_bytes += file_size(store, key);
                disk.delete(key)?;
                report.removed_packs += 1;
            }
            continue;
        }
        let Some(id) = pack::parse_index_key(key) else {
            continue;
        };
        let Some(bytes) = disk.get(key)? else {
            continue;
        };
        let entries = match pack::decode_index(&bytes) {
            Ok((entries, _)) => entries,
            Err(reason) => {
                tracing::warn!(key, reason, "leaving a pack with a corrupt index alone");
                continue;
            }
        };
        let kept: Vec<_> = entries
            .iter()
            .filter(|e| live.contains(&e.digest))
            .collect();
        if kept.len() == entries.len() {
            continue;
        }
        let pack_key = pack::pack_key(&id);
        let old_size = file_size(store, &pack_key);
        if !kept.is_empty() {
            let mut builder = PackBuilder::new();
            for e in &kept {
                let stored = disk
                    .get_range(&pack_key, e.offset, e.stored_len as u64)?
                    .ok_or_else(|| StoreError::PackMissing {
                        tier: disk.name(),
                        pack: id,
                    })?;
                builder.add(e.digest, e.codec, &stored, e.len as usize);
            }
            let sealed = builder.finish();
            report.freed_bytes = report.freed_bytes.saturating_sub(sealed.data.len() as u64);
            store.slots[0].put_pack(&sealed)?;
            report.repacked_packs += 1;
        } else {
            report.removed_packs += 1;
        }
        // The index goes first: a pack without an index is garbage, an
        // index without its pack would be a lie.
        disk.delete(key)?;
        disk.delete(&pack_key)?;
        report.freed_bytes += old_size;
    }
    disk.clean_tmp()?;
    store.slots[0].reload()?;
    tracing::info!(?report, "gc done");
    Ok(report)
}

fn file_size(store: &Store, key: &str) -> u64 {
    std::fs::metadata(store.disk().path(key)).map_or(0, |m| m.len())
}
