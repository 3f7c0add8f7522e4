//! The store: a home disk tier, a RAM cache of verified chunks in front of
//! it, and remote tiers behind it. Reads fall through RAM -> disk ->
//! remotes, verify every chunk against its digest, and fill the faster
//! tiers; writes go to the home disk tier.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::chunk::{self, DEFAULT_CHUNK_SIZE, DEFAULT_LEVEL};
use crate::lock::StoreLock;
use crate::pack::PackBuilder;
use crate::refs::RefName;
use crate::root::{self, Root};
use crate::slot::Fetched;
pub(crate) use crate::slot::Slot;
use crate::tier::{DiskTier, RamTier, Tier};
use crate::{ChunkFailure, Digest, StoreError};

/// The store used when neither `--store` nor `SNAPRUN_STORE` names one.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/snaprun";
/// The environment variable that names the store directory.
pub const STORE_ENV: &str = "SNAPRUN_STORE";

/// `--store DIR` if given, else `$SNAPRUN_STORE`, else `/var/lib/snaprun`.
pub fn store_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os(STORE_ENV) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(DEFAULT_STORE_DIR),
    }
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Capacity of the RAM tier (decompressed chunks), in bytes.
    pub ram_bytes: u64,
    /// zstd level for new chunks; 0 stores them uncompressed.
    pub level: i32,
    pub chunk_size: usize,
    /// Threads that hash and compress chunks.
    pub threads: usize,
    /// Chunks one `read_chunks` call fetches at once.
    pub read_threads: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            ram_bytes: 256 << 20,
            level: DEFAULT_LEVEL,
            chunk_size: DEFAULT_CHUNK_SIZE,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            read_threads: 8,
        }
    }
}

/// One chunk's read, as a reading thread leaves it.
type ChunkRead = Result<Vec<u8>, StoreError>;

/// A content-addressed chunk store in tiers.
pub struct Store {
    dir: PathBuf,
    disk: Arc<DiskTier>,
    ram: RamTier,
    /// `[0]` is the home disk tier, then the remotes, fastest first.
    pub(crate) slots: Vec<Slot>,
    pub(crate) opts: StoreOptions,
}

fn ram_key(digest: &Digest) -> String {
    format!("chunks/{digest}")
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreOptions::default())
    }

    pub fn open_with(dir: &Path, opts: StoreOptions) -> Result<Self, StoreError> {
        let disk = Arc::new(DiskTier::open(dir)?);
        Ok(Self {
            dir: dir.to_path_buf(),
            ram: RamTier::new(opts.ram_bytes),
            slots: vec![Slot::new(disk.clone())],
            disk,
            opts,
        })
    }

    /// Adds a slower tier below the existing ones; reads that miss the
    /// faster tiers fall through to it and fill them.
    pub fn add_remote(&mut self, tier: Arc<dyn Tier>) {
        self.slots.push(Slot::new(tier));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn disk(&self) -> &DiskTier {
        &self.disk
    }

    pub fn ram(&self) -> &RamTier {
        &self.ram
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Names of the tiers a read goes through, fastest first.
    pub fn tier_names(&self) -> Vec<String> {
        std::iter::once(self.ram.name())
            .chain(self.slots.iter().map(|s| s.tier.name()))
            .collect()
    }

    /// True when the home tier holds the chunk.
    pub fn has_chunk(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.slots[0].contains(digest)
    }

    /// Reads one chunk, verified, from the fastest tier that has it, and
    /// fills the faster tiers. `snapshot` names the snapshot for errors.
    pub fn read_chunk(&self, c: &chunk::ChunkRef, snapshot: &str) -> Result<Vec<u8>, StoreError> {
        let Some(digest) = c.digest else {
            return Ok(vec![0u8; c.len as usize]);
        };
        if c.len as usize > chunk::MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkTooLarge {
                snapshot: snapshot.to_string(),
                digest,
                len: c.len,
            });
        }
        let mut failures = Vec::new();
        let key = ram_key(&digest);
        if let Ok(Some(data)) = self.ram.get(&key) {
            if data.len() as u64 == c.len && Digest::of(&data) == digest {
                return Ok(data);
            }
            let _ = self.ram.delete(&key);
            failures.push(ChunkFailure {
                tier: self.ram.name(),
                reason: "corrupt: content does not match its digest".into(),
            });
        }
        for (i, slot) in self.slots.iter().enumerate() {
            let mut got = slot.read(&digest, c.len);
            if matches!(&got, Err(r) if r.starts_with("missing: pack")) {
                // GC may have repacked the chunk since the index was read.
                if slot.reload().is_ok() {
                    got = slot.read(&digest, c.len);
                }
            }
            match got {
                Ok(Some(f)) => {
                    let _ = self.ram.put(&key, &f.data);
                    for faster in &self.slots[..i] {
                        if let Err(e) = self.fill(faster, &digest, &f) {
                            tracing::warn!(tier = %faster.tier.name(), chunk = %digest, error = %e, "could not fill tier");
                        }
                    }
                    if failures.iter().any(|f| f.reason != "missing") {
                        tracing::warn!(snapshot, chunk = %digest, tier = %slot.tier.name(), "chunk read from a slower tier after failures");
                    }
                    return Ok(f.data);
                }
                Ok(None) => failures.push(ChunkFailure {
                    tier: slot.tier.name(),
                    reason: "missing".into(),
                }),
                Err(reason) => failures.push(ChunkFailure {
                    tier: slot.tier.name(),
                    reason,
                }),
            }
        }
        Err(StoreError::Chunk {
            snapshot: snapshot.to_string(),
            digest,
            failures,
        })
    }

    /// Reads chunks and appends their bytes to `out`, in order. With a
    /// remote tier, or 8 or more stored chunks, they are fetched on up to
    /// `read_threads` threads at once, so a remote's per-request latency
    /// overlaps.
    pub fn read_chunks(
        &self,
        chunks: &[chunk::ChunkRef],
        out: &mut Vec<u8>,
        snapshot: &str,
    ) -> Result<(), StoreError> {
        let stored = chunks.iter().filter(|c| c.digest.is_some()).count();
        let threads = self.opts.read_threads.min(stored);
        // Threads pay for a remote's latency, or for many chunks to
        // decompress; a short run from the local disk is read in place.
        if threads <= 1 || (self.slots.len() == 1 && stored < 8) {
            for c in chunks {
                if c.digest.is_none() {
                    out.resize(out.len() + c.len as usize, 0);
                } else {
                    out.extend_from_slice(&self.read_chunk(c, snapshot)?);
                }
            }
            return Ok(());
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let results: Vec<Mutex<Option<ChunkRead>>> =
            chunks.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = chunks.get(i) else { break };
                    if c.digest.is_some() {
                        let r = self.read_chunk(c, snapshot);
                        let failed = r.is_err();
                        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                        if failed {
                            // Stop handing out work: the read has failed.
                            next.store(chunks.len(), std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        for (c, r) in chunks.iter().zip(results) {
            if c.digest.is_none() {
                out.resize(out.len() + c.len as usize, 0);
                continue;
            }
            match r.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(data)) => out.extend_from_slice(&data),
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(StoreError::Chunk {
                        snapshot: snapshot.to_string(),
                        digest: c.digest.expect("a stored chunk"),
                        failures: vec![ChunkFailure {
                            tier: "store".into(),
                            reason: "not read: an earlier chunk of the run failed".into(),
                        }],
                    })
                }
            }
        }
        Ok(())
    }

    fn fill(&self, slot: &Slot, digest: &Digest, f: &Fetched) -> Result<(), StoreError> {
        if slot.contains(digest)? {
            return Ok(());
        }
        let mut fill = slot.fill.lock().unwrap_or_else(|e| e.into_inner());
        fill.add(*digest, f.codec, f.stored(), f.data.len());
        if fill.is_full() {
            let full = std::mem::take(&mut *fill);
            drop(fill);
            self.put_pack_locked(slot, full)?;
        }
        Ok(())
    }

    /// Seals and puts a pack into a slot, holding the store lock shared
    /// while it does so when the slot is the home disk.
    fn put_pack_locked(&self, slot: &Slot, builder: PackBuilder) -> Result<(), StoreError> {
        if builder.is_empty() {
            return Ok(());
        }
        let _lock = if std::ptr::eq(slot, &self.slots[0]) {
            Some(StoreLock::acquire(&self.dir, false)?)
        } else {
            None
        };
        slot.put_pack(&builder.finish())
    }

    /// Writes the chunks that reads filled into faster tiers.
    pub fn flush(&self) -> Result<(), StoreError> {
        for slot in &self.slots {
            let full = std::mem::take(&mut *slot.fill.lock().unwrap_or_else(|e| e.into_inner()));
            self.put_pack_locked(slot, full)?;
        }
        Ok(())
    }

    /// Gets an object from the first durable tier that has it.
    fn get_object(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        for slot in &self.slots {
            if let Some(data) = slot.tier.get(key)? {
                return Ok(Some((data, slot.tier.name())));
            }
        }
        Ok(None)
    }

    /// The root digest a name points at, looked up through the tiers.
    pub fn resolve(&self, name: &RefName) -> Result<Digest, StoreError> {
        match self.get_object(&name.key())? {
            Some((bytes, tier)) => RefName::decode(&bytes).ok_or_else(|| StoreError::BadRef {
                tier,
                name: name.clone(),
                reason: "does not hold a digest".into(),
            }),
            None => Err(StoreError::NoSuchSnapshot {
                name: name.clone(),
                tiers: self.slots.iter().map(|s| s.tier.name()).collect(),
            }),
        }
    }

    /// Loads and verifies a snapshot root.
    pub fn load_root(&self, digest: &Digest) -> Result<Root, StoreError> {
        match self.get_object(&root::root_key(digest))? {
            Some((bytes, tier)) => {
                Root::decode(digest, &bytes).map_err(|reason| StoreError::BadRoot {
                    tier,
                    digest: *digest,
                    reason,
                })
            }
            None => Err(StoreError::BadRoot {
                tier: self
                    .slots
                    .iter()
                    .map(|s| s.tier.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                digest: *digest,
                reason: "missing".into(),
            }),
        }
    }

    /// Resolves a name and loads its root.
    pub fn open_snapshot(&self, name: &RefName) -> Result<(Digest, Root), StoreError> {
        let digest = self.resolve(name)?;
        Ok((digest, self.load_root(&digest)?))
    }

    /// Writes a root into the home tier; returns its digest.
    pub fn put_root(&self, root: &Root) -> Result<Digest, StoreError> {
        let bytes = root.encode();
        let digest = Digest::of(&bytes);
        self.disk.put(&root::root_key(&digest), &bytes)?;
        Ok(digest)
    }

    /// Points `name` at a root in the home tier (atomic replace).
    pub fn set_ref(&self, name: &RefName, digest: &Digest) -> Result<(), StoreError> {
        self.disk.put(&name.key(), &RefName::encode(digest))?;
        Ok(())
    }

    /// Removes a name; its chunks stay until `gc`.
    pub fn remove_ref(&self, name: &RefName) -> Result<(), StoreError> {
        if !self.disk.has(&name.key())? {
            return Err(StoreError::NoSuchSnapshot {
                name: name.clone(),
                tiers: vec![self.disk.name()],
            });
        }
        self.disk.delete(&name.key())?;
        Ok(())
    }

    /// The names in the home tier and what they point at; a ref that does
    /// not hold a digest is reported as an error.
    pub fn list_refs(&self) -> Result<Vec<(RefName, Digest)>, StoreError> {
        list_refs(&*self.disk)
    }

    /// Reads every chunk of a snapshot through the tiers, verifying each;
    /// returns the number of stored (non-zero) chunks checked.
    pub fn verify(&self, name: &RefName) -> Result<usize, StoreError> {
        let (_, root) = self.open_snapshot(name)?;
        let label = name.to_string();
        for d in &root.chunks {
            let len = self.chunk_len(d).unwrap_or(0);
            self.read_chunk(
                &chunk::ChunkRef {
                    len,
                    digest: Some(*d),
                },
                &label,
            )?;
        }
        Ok(root.chunks.len())
    }

    /// The uncompressed length of a chunk, from the first tier indexing it.
    pub fn chunk_len(&self, digest: &Digest) -> Option<u64> {
        self.chunk_sizes(digest).map(|(len, _)| len)
    }

    /// `(uncompressed, stored)` bytes of a chunk, from the first tier
    /// indexing it.
    pub fn chunk_sizes(&self, digest: &Digest) -> Option<(u64, u64)> {
        self.slots.iter().find_map(|s| {
            s.index()
                .ok()?
                .get(digest)
                .map(|l| (l.entry.len as u64, l.entry.stored_len as u64))
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(error = %e, "could not write filled chunks");
        }
    }
}

/// The refs a tier holds.
pub fn list_refs(tier: &dyn Tier) -> Result<Vec<(RefName, Digest)>, StoreError> {
    let mut out = Vec::new();
    for key in tier.list("refs/")? {
        let Some(name) = RefName::from_key(&key) else {
            continue;
        };
        let Some(bytes) = tier.get(&key)? else {
            continue;
        };
        let digest = RefName::decode(&bytes).ok_or_else(|| StoreError::BadRef {
            tier: tier.name(),
            name: name.clone(),
            reason: "does not hold a digest".into(),
        })?;
        out.push((name, digest));
    }
    Ok(out)
}
