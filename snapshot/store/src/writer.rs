//! Writing a snapshot: data is cut into chunks, zero chunks are dropped,
//! chunks the home tier already holds are referenced, not stored again, and
//! new ones are compressed (on several threads when a call brings several
//! chunks) into packs. `commit` puts the last pack, then the root, then the
//! ref: the order that keeps every earlier snapshot intact and never lets a
//! root name a chunk that is not durable.

use std::collections::HashSet;
use std::sync::Arc;

use crate::chunk::{self, ChunkRef, Codec};
use crate::lock::StoreLock;
use crate::pack::PackBuilder;
use crate::progress::Progress;
use crate::refs::RefName;
use crate::root::Root;
use crate::{Digest, Store, StoreError};

/// What a writer did, in bytes of uncompressed data unless said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Every byte handed to `add`.
    pub bytes: u64,
    /// Bytes in all-zero chunks (not stored).
    pub zero_bytes: u64,
    /// Bytes in chunks already in the store or earlier in this snapshot.
    pub dedup_bytes: u64,
    /// Bytes in chunks this writer stored.
    pub new_bytes: u64,
    /// What those new chunks take on disk (compressed).
    pub stored_bytes: u64,
    pub new_chunks: u64,
    pub packs: u64,
}

/// A snapshot being written into a store's home tier.
pub struct SnapshotWriter {
    store: Arc<Store>,
    _lock: StoreLock,
    pack: PackBuilder,
    /// Every distinct non-zero chunk referenced, in first-use order.
    chunks: Vec<Digest>,
    seen: HashSet<Digest>,
    stats: WriteStats,
    progress: Option<Progress>,
}

/// One chunk, hashed and (when new) compressed.
struct Prepared {
    len: usize,
    digest: Option<Digest>,
    stored: Option<(Codec, Vec<u8>)>,
}

impl SnapshotWriter {
    /// Starts a snapshot. Holds the store lock shared until the writer is
    /// committed or dropped, so GC waits for it.
    pub fn new(store: Arc<Store>) -> Result<Self, StoreError> {
        let lock = StoreLock::acquire(store.dir(), false)?;
        Ok(Self {
            store,
            _lock: lock,
            pack: PackBuilder::new(),
            chunks: Vec::new(),
            seen: HashSet::new(),
            stats: WriteStats::default(),
            progress: None,
        })
    }

    /// Shows progress (bytes, rate) on a terminal while writing.
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    pub fn stats(&self) -> WriteStats {
        self.stats
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Stores `data` and returns the chunks that cover it, in order.
    /// Chunk boundaries fall on multiples of the chunk size counted from
    /// `align_offset` = 0, where `align_offset` is the data's offset in its
    /// mapping: the same bytes at the same place give the same chunks.
    pub fn add(&mut self, align_offset: u64, data: &[u8]) -> Result<Vec<ChunkRef>, StoreError> {
        let ranges = chunk::split(align_offset, data.len(), self.store.opts.chunk_size);
        let prepared = self.prepare(data, &ranges)?;
        let mut refs = Vec::with_capacity(prepared.len());
        for p in prepared {
            self.stats.bytes += p.len as u64;
            refs.push(ChunkRef {
                len: p.len as u64,
                digest: p.digest,
            });
            let Some(digest) = p.digest else {
                self.stats.zero_bytes += p.len as u64;
                continue;
            };
            let first = self.seen.insert(digest);
            if first {
                self.chunks.push(digest);
            }
            match p.stored {
                Some((codec, stored)) if first => {
                    self.stats.new_bytes += p.len as u64;
                    self.stats.stored_bytes += stored.len() as u64;
                    self.stats.new_chunks += 1;
                    self.pack.add(digest, codec, &stored, p.len);
                    if self.pack.is_full() {
                        self.seal()?;
                    }
                }
                _ => self.stats.dedup_bytes += p.len as u64,
            }
        }
        if let Some(p) = &mut self.progress {
            p.set(self.stats.bytes);
        }
        Ok(refs)
    }

    /// Hashes each range, and compresses those the store lacks; several
    /// ranges are spread over threads.
    fn prepare(&self, data: &[u8], ranges: &[(usize, usize)]) -> Result<Vec<Prepared>, StoreError> {
        let index = self.store.slots[0].index()?;
        let level = self.store.opts.level;
        let seen = &self.seen;
        let one = |&(s, e): &(usize, usize)| {
            let bytes = &data[s..e];
            if chunk::is_zero(bytes) {
                return Prepared {
                    len: e - s,
                    digest: None,
                    stored: None,
                };
            }
            let digest = Digest::of(bytes);
            let known = seen.contains(&digest) || index.contains_key(&digest);
            Prepared {
                len: e - s,
                digest: Some(digest),
                stored: (!known).then(|| chunk::encode(bytes, level)),
            }
        };
        let threads = self.store.opts.threads.min(ranges.len());
        if threads <= 1 {
            return Ok(ranges.iter().map(one).collect());
        }
        let mut out: Vec<Option<Prepared>> = (0..ranges.len()).map(|_| None).collect();
        std::thread::scope(|s| {
            let per = ranges.len().div_ceil(threads);
            for (slots, part) in out.chunks_mut(per).zip(ranges.chunks(per)) {
                let one = &one;
                s.spawn(move || {
                    for (slot, r) in slots.iter_mut().zip(part) {
                        *slot = Some(one(r));
                    }
                });
            }
        });
        Ok(out
            .into_iter()
            .map(|p| p.expect("every range prepared"))
            .collect())
    }

    fn seal(&mut self) -> Result<(), StoreError> {
        let full = std::mem::take(&mut self.pack);
        if full.is_empty() {
            return Ok(());
        }
        self.store.slots[0].put_pack(&full.finish())?;
        self.stats.packs += 1;
        Ok(())
    }

    /// Makes the snapshot durable: the last pack, then the root (every
    /// chunk referenced plus `manifest`), then, when named, the ref.
    /// Returns the root's digest.
    pub fn commit(mut self, manifest: &[u8], name: Option<&RefName>) -> Result<Digest, StoreError> {
        self.seal()?;
        let root = Root {
            chunks: std::mem::take(&mut self.chunks),
            manifest: manifest.to_vec(),
        };
        let digest = self.store.put_root(&root)?;
        if let Some(name) = name {
            self.store.set_ref(name, &digest)?;
        }
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        tracing::debug!(root = %digest, stats = ?self.stats, "snapshot committed");
        Ok(digest)
    }
}
