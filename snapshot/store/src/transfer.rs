//! Push and pull: copy a named snapshot between the home tier and a remote
//! tier, moving only the chunks the destination lacks. Chunks go in packs,
//! verified on the way; the root goes after every chunk is durable, the ref
//! last.

use std::collections::HashSet;
use std::sync::Arc;

use crate::lock::StoreLock;
use crate::pack::PackBuilder;
use crate::progress::Progress;
use crate::refs::RefName;
use crate::root::{self, Root};
use crate::store::Slot;
use crate::tier::Tier;
use crate::{ChunkFailure, Digest, Store, StoreError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferReport {
    /// Distinct stored chunks the snapshot references.
    pub chunks: usize,
    /// Those the destination lacked, and so were copied.
    pub copied_chunks: usize,
    /// Stored (compressed) bytes copied.
    pub copied_bytes: u64,
    pub packs: usize,
}

/// Copies `name` from the home tier to `remote`.
pub fn push(
    store: &Store,
    name: &RefName,
    remote: Arc<dyn Tier>,
) -> Result<TransferReport, StoreError> {
    let digest = store.resolve(name)?;
    let to = Slot::new(remote);
    copy(&store.slots[0], &to, name, &digest, "push")
}

/// Copies `name` from `remote` into the home tier.
pub fn pull(
    store: &Store,
    name: &RefName,
    remote: Arc<dyn Tier>,
) -> Result<TransferReport, StoreError> {
    let _lock = StoreLock::acquire(store.dir(), false)?;
    let from = Slot::new(remote);
    let bytes = from
        .tier
        .get(&name.key())?
        .ok_or_else(|| StoreError::NoSuchSnapshot {
            name: name.clone(),
            tiers: vec![from.tier.name()],
        })?;
    let digest = RefName::decode(&bytes).ok_or_else(|| StoreError::BadRef {
        tier: from.tier.name(),
        name: name.clone(),
        reason: "does not hold a digest".into(),
    })?;
    copy(&from, &store.slots[0], name, &digest, "pull")
}

fn copy(
    from: &Slot,
    to: &Slot,
    name: &RefName,
    digest: &Digest,
    what: &str,
) -> Result<TransferReport, StoreError> {
    let key = root::root_key(digest);
    let root_bytes = from.tier.get(&key)?.ok_or_else(|| StoreError::BadRoot {
        tier: from.tier.name(),
        digest: *digest,
        reason: format!("missing, but {name} names it"),
    })?;
    let root = Root::decode(digest, &root_bytes).map_err(|reason| StoreError::BadRoot {
        tier: from.tier.name(),
        digest: *digest,
        reason,
    })?;
    let have = to.index()?;
    let src = from.index()?;
    let mut report = TransferReport {
        chunks: root.chunks.len(),
        ..Default::default()
    };
    let missing: Vec<Digest> = {
        let mut seen = HashSet::new();
        root.chunks
            .iter()
            .filter(|d| !have.contains_key(d) && seen.insert(**d))
            .copied()
            .collect()
    };
    let total: u64 = missing
        .iter()
        .filter_map(|d| src.get(d).map(|l| l.entry.stored_len as u64))
        .sum();
    let mut progress = Progress::new(&format!("{what} {name}"), Some(total));
    let mut pack = PackBuilder::new();
    for d in &missing {
        let len = src.get(d).map_or(0, |l| l.entry.len as u64);
        let fetched = match from.read(d, len) {
            Ok(Some(f)) => f,
            Ok(None) => fail(from, name, d, "missing".into())?,
            Err(reason) => fail(from, name, d, reason)?,
        };
        pack.add(*d, fetched.codec, fetched.stored(), fetched.data.len());
        report.copied_chunks += 1;
        report.copied_bytes += fetched.stored().len() as u64;
        progress.set(report.copied_bytes);
        if pack.is_full() {
            to.put_pack(&std::mem::take(&mut pack).finish())?;
            report.packs += 1;
        }
    }
    if !pack.is_empty() {
        to.put_pack(&pack.finish())?;
        report.packs += 1;
    }
    if !to.tier.has(&key)? {
        to.tier.put(&key, &root_bytes)?;
    }
    to.tier.put(&name.key(), &RefName::encode(digest))?;
    progress.finish();
    Ok(report)
}

fn fail<T>(from: &Slot, name: &RefName, digest: &Digest, reason: String) -> Result<T, StoreError> {
    Err(StoreError::Chunk {
        snapshot: name.to_string(),
        digest: *digest,
        failures: vec![ChunkFailure {
            tier: from.tier.name(),
            reason,
        }],
    })
}
