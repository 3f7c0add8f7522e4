//! snaprun's snapshot store: content-addressed, compressed, deduplicated
//! chunks in packs, in tiers (RAM, local disk, S3).
//!
//! The engine's interface is small: [`SnapshotWriter::add`] turns bytes
//! into [`ChunkRef`]s, [`SnapshotWriter::commit`] makes the snapshot durable
//! under a [`RefName`], and [`Store::read_chunk`] / [`Store::read_chunks`]
//! give the bytes back, verified. The store never knows about processes;
//! the manifest is opaque bytes to it. See docs/store.md.

pub mod chunk;
mod digest;
pub mod gc;
pub mod lock;
pub mod pack;
pub mod progress;
pub mod refs;
pub mod root;
mod slot;
mod store;
#[cfg(all(feature = "testing", feature = "s3"))]
pub mod testing;
pub mod tier;
pub mod transfer;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt::Write as _;

pub use chunk::ChunkRef;
pub use digest::{BadDigest, Digest};
pub use gc::{gc, GcReport};
pub use lock::LockError;
pub use progress::Progress;
pub use refs::{BadRefName, RefName};
pub use root::Root;
pub use store::{store_dir, Store, StoreOptions, DEFAULT_STORE_DIR, STORE_ENV};
pub use tier::{Tier, TierError};
pub use transfer::{pull, push, TransferReport};
pub use writer::{SnapshotWriter, WriteStats};

/// Why one tier could not deliver a chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFailure {
    pub tier: String,
    pub reason: String,
}

fn failures_text(failures: &[ChunkFailure]) -> String {
    let mut s = String::new();
    for (i, f) in failures.iter().enumerate() {
        let _ = write!(
            s,
            "{}{}: {}",
            if i > 0 { "; " } else { "" },
            f.tier,
            f.reason
        );
    }
    if s.is_empty() {
        s.push_str("no tier has it");
    }
    s
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("snapshot {snapshot}: chunk {digest}: {}", failures_text(.failures))]
    Chunk {
        snapshot: String,
        digest: Digest,
        failures: Vec<ChunkFailure>,
    },
    #[error("snapshot {snapshot}: chunk {digest}: length {len} is over the cap")]
    ChunkTooLarge {
        snapshot: String,
        digest: Digest,
        len: u64,
    },
    #[error("no snapshot named {name} in {}", .tiers.join(", "))]
    NoSuchSnapshot { name: RefName, tiers: Vec<String> },
    #[error("{tier}: ref {name}: {reason}")]
    BadRef {
        tier: String,
        name: RefName,
        reason: String,
    },
    #[error("{tier}: snapshot root {digest}: {reason}")]
    BadRoot {
        tier: String,
        digest: Digest,
        reason: String,
    },
    #[error("{tier}: pack {pack} is missing")]
    PackMissing { tier: String, pack: Digest },
}
