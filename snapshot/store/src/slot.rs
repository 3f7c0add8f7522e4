//! One durable tier as the store sees it: the tier, its chunk index
//! (loaded from the pack indexes on first use), and the pack that collects
//! chunks filled into it from slower tiers; plus the verified read of one
//! chunk from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::chunk::{self, Codec};
use crate::pack::{self, IndexEntry, PackBuilder, SealedPack};
use crate::tier::{Tier, TierError};
use crate::{Digest, StoreError};

/// Where a chunk lies in one tier.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Located {
    pub pack: Digest,
    pub entry: IndexEntry,
}

pub(crate) type Index = HashMap<Digest, Located>;

/// One durable tier with its chunk index (loaded on first use) and the pack
/// that collects chunks filled into it from slower tiers.
pub(crate) struct Slot {
    pub tier: Arc<dyn Tier>,
    index: RwLock<Option<Arc<Index>>>,
    pub fill: Mutex<PackBuilder>,
}

impl Slot {
    pub(crate) fn new(tier: Arc<dyn Tier>) -> Self {
        Self {
            tier,
            index: RwLock::new(None),
            fill: Mutex::new(PackBuilder::new()),
        }
    }

    /// The tier's chunk index, read from its pack indexes on first use.
    /// An index that cannot be read or parsed is skipped with a warning:
    /// its chunks then count as missing in this tier.
    pub fn index(&self) -> Result<Arc<Index>, StoreError> {
        if let Some(i) = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Ok(i.clone());
        }
        self.reload()
    }

    pub fn reload(&self) -> Result<Arc<Index>, StoreError> {
        let mut index = Index::new();
        for key in self.tier.list("packs/")? {
            let Some(pack) = pack::parse_index_key(&key) else {
                continue;
            };
            let parsed = match self.tier.get(&key)? {
                Some(bytes) => pack::decode_index(&bytes),
                None => continue,
            };
            match parsed {
                Ok((entries, _)) => {
                    for entry in entries {
                        index.entry(entry.digest).or_insert(Located { pack, entry });
                    }
                }
                Err(reason) => {
                    tracing::warn!(tier = %self.tier.name(), key, reason, "skipping corrupt pack index")
                }
            }
        }
        let index = Arc::new(index);
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Some(index.clone());
        Ok(index)
    }

    pub fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.index()?.contains_key(digest))
    }

    /// Puts a sealed pack (pack first, then its index) and adds its chunks
    /// to the loaded index.
    pub fn put_pack(&self, sealed: &SealedPack) -> Result<(), StoreError> {
        self.tier.put(&pack::pack_key(&sealed.id), &sealed.data)?;
        self.tier.put(&pack::index_key(&sealed.id), &sealed.index)?;
        let mut guard = self.index.write().unwrap_or_else(|e| e.into_inner());
        if let Some(index) = guard.as_mut() {
            let index = Arc::make_mut(index);
            for entry in &sealed.entries {
                index.entry(entry.digest).or_insert(Located {
                    pack: sealed.id,
                    entry: *entry,
                });
            }
        }
        Ok(())
    }

    /// Reads one chunk from this tier: `Ok(None)` when the tier does not
    /// have it, `Err(reason)` when it has it but cannot deliver it intact.
    pub(crate) fn read(&self, digest: &Digest, len: u64) -> Result<Option<Fetched>, String> {
        let index = self.index().map_err(|e| e.to_string())?;
        let Some(loc) = index.get(digest).copied() else {
            return Ok(None);
        };
        let e = loc.entry;
        if e.len as u64 != len {
            return Err(format!(
                "corrupt: indexed as {} bytes, the snapshot says {len}",
                e.len
            ));
        }
        let key = pack::pack_key(&loc.pack);
        let stored = match self.tier.get_range(&key, e.offset, e.stored_len as u64) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(format!("missing: pack {} is gone", loc.pack.short())),
            Err(TierError::Range { size, .. }) => {
                return Err(format!(
                    "corrupt: pack {} is truncated ({size} bytes, the chunk is at {}+{})",
                    loc.pack.short(),
                    e.offset,
                    e.stored_len
                ))
            }
            Err(err) => return Err(format!("read error: {err}")),
        };
        // A raw chunk's stored bytes are its data: kept once, not copied.
        let (data, stored) = match e.codec {
            Codec::Raw if stored.len() == e.len as usize => (Ok(stored), None),
            _ => (
                chunk::decode(e.codec, &stored, e.len as usize),
                Some(stored),
            ),
        };
        let data = data.map_err(|r| format!("corrupt in pack {}: {r}", loc.pack.short()))?;
        if Digest::of(&data) != *digest {
            return Err(format!(
                "corrupt in pack {}: content does not match its digest",
                loc.pack.short()
            ));
        }
        Ok(Some(Fetched {
            data,
            codec: e.codec,
            stored,
        }))
    }
}

pub(crate) struct Fetched {
    pub data: Vec<u8>,
    pub codec: Codec,
    /// The bytes as stored, where they differ from `data` (compressed).
    stored: Option<Vec<u8>>,
}

impl Fetched {
    /// The chunk as stored (for a raw chunk, its data).
    pub fn stored(&self) -> &[u8] {
        self.stored.as_deref().unwrap_or(&self.data)
    }
}
