//! Packs: many stored chunks in one object, so S3 sees few large objects,
//! plus an index object per pack so one chunk is one ranged read.
//!
//! `packs/<id>.pack`: `SNAPPACK`, u32 version, u32 reserved (16 bytes),
//! then the stored chunks back to back. `<id>` is the BLAKE3 digest of the
//! whole pack file.
//!
//! `packs/<id>.idx`: `SNAPIDX\0`, u32 version, u32 entry count, u64 pack
//! size (24 bytes); per chunk 52 bytes: digest (32), offset in the pack
//! (u64), stored length (u32), uncompressed length (u32), codec (u8), 3
//! zero bytes; then the BLAKE3 digest (32 bytes) of everything before it.
//! All integers little-endian.
//!
//! A pack is put before its index: an index always names a pack that is
//! there; a pack without an index is garbage from a crashed writer.

use std::collections::HashSet;

use crate::chunk::{Codec, MAX_CHUNK_SIZE};
use crate::Digest;

pub const PACK_MAGIC: &[u8; 8] = b"SNAPPACK";
pub const INDEX_MAGIC: &[u8; 8] = b"SNAPIDX\0";
pub const PACK_VERSION: u32 = 1;
pub const PACK_HEADER_LEN: u64 = 16;
const INDEX_HEADER_LEN: usize = 24;
const ENTRY_LEN: usize = 52;
/// Packs are sealed once they hold this many stored bytes.
pub const TARGET_PACK_SIZE: usize = 32 << 20;
/// Indexes larger than this are refused before parsing.
pub const MAX_INDEX_SIZE: usize = 64 << 20;

/// Where one chunk lies in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub digest: Digest,
    pub offset: u64,
    pub stored_len: u32,
    pub len: u32,
    pub codec: Codec,
}

pub fn pack_key(id: &Digest) -> String {
    format!("packs/{id}.pack")
}

pub fn index_key(id: &Digest) -> String {
    format!("packs/{id}.idx")
}

/// The pack id an index key names (`packs/<id>.idx`).
pub fn parse_index_key(key: &str) -> Option<Digest> {
    key.strip_prefix("packs/")?
        .strip_suffix(".idx")?
        .parse()
        .ok()
}

/// The pack id a pack key names (`packs/<id>.pack`).
pub fn parse_pack_key(key: &str) -> Option<Digest> {
    key.strip_prefix("packs/")?
        .strip_suffix(".pack")?
        .parse()
        .ok()
}

/// A pack being filled in memory.
pub struct PackBuilder {
    data: Vec<u8>,
    entries: Vec<IndexEntry>,
    seen: HashSet<Digest>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    pub fn new() -> Self {
        let mut data = Vec::with_capacity(TARGET_PACK_SIZE + MAX_CHUNK_SIZE);
        data.extend_from_slice(PACK_MAGIC);
        data.extend_from_slice(&PACK_VERSION.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        Self {
            data,
            entries: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// Appends a stored chunk; a digest already in this pack is skipped.
    pub fn add(&mut self, digest: Digest, codec: Codec, stored: &[u8], len: usize) {
        if !self.seen.insert(digest) {
            return;
        }
        self.entries.push(IndexEntry {
            digest,
            offset: self.data.len() as u64,
            stored_len: stored.len() as u32,
            len: len as u32,
            codec,
        });
        self.data.extend_from_slice(stored);
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.seen.contains(digest)
    }

    /// Stored bytes so far, header included.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.data.len() >= TARGET_PACK_SIZE
    }

    /// Seals the pack: its id, its bytes and its index's bytes.
    pub fn finish(self) -> SealedPack {
        let id = Digest::of(&self.data);
        let index = encode_index(&self.entries, self.data.len() as u64);
        SealedPack {
            id,
            data: self.data,
            index,
            entries: self.entries,
        }
    }
}

/// A pack ready to be put: the pack first, then its index.
pub struct SealedPack {
    pub id: Digest,
    pub data: Vec<u8>,
    pub index: Vec<u8>,
    pub entries: Vec<IndexEntry>,
}

pub fn encode_index(entries: &[IndexEntry], pack_size: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len() * ENTRY_LEN + 32);
    out.extend_from_slice(INDEX_MAGIC);
    out.extend_from_slice(&PACK_VERSION.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&pack_size.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.digest.0);
        out.extend_from_slice(&e.offset.to_le_bytes());
        out.extend_from_slice(&e.stored_len.to_le_bytes());
        out.extend_from_slice(&e.len.to_le_bytes());
        out.extend_from_slice(&[e.codec as u8, 0, 0, 0]);
    }
    let sum = Digest::of(&out);
    out.extend_from_slice(&sum.0);
    out
}

/// Parses and checks an index: magic, version, checksum, and that every
/// entry lies inside the pack. Returns the entries and the pack size.
pub fn decode_index(bytes: &[u8]) -> Result<(Vec<IndexEntry>, u64), String> {
    if bytes.len() > MAX_INDEX_SIZE {
        return Err(format!(
            "{} bytes is over the {MAX_INDEX_SIZE} byte cap",
            bytes.len()
        ));
    }
    if bytes.len() < INDEX_HEADER_LEN + 32 {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Digest::of(body).0 != sum {
        return Err("checksum mismatch".into());
    }
    if &body[..8] != INDEX_MAGIC {
        return Err("bad magic".into());
    }
    let u32_at = |o: usize| u32::from_le_bytes(body[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(body[o..o + 8].try_into().expect("8 bytes"));
    let version = u32_at(8);
    if version != PACK_VERSION {
        return Err(format!(
            "version {version} is not supported (this snaprun reads {PACK_VERSION})"
        ));
    }
    let count = u32_at(12) as usize;
    let pack_size = u64_at(16);
    if body.len() != INDEX_HEADER_LEN + count * ENTRY_LEN {
        return Err(format!("{} bytes for {count} entries", body.len()));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let o = INDEX_HEADER_LEN + i * ENTRY_LEN;
        let digest = Digest(body[o..o + 32].try_into().expect("32 bytes"));
        let e = IndexEntry {
            digest,
            offset: u64_at(o + 32),
            stored_len: u32_at(o + 40),
            len: u32_at(o + 44),
            codec: Codec::from_u8(body[o + 48])
                .ok_or_else(|| format!("chunk {digest}: unknown codec {}", body[o + 48]))?,
        };
        let end = e.offset.checked_add(e.stored_len as u64);
        if e.offset < PACK_HEADER_LEN || end.is_none_or(|end| end > pack_size) {
            return Err(format!("chunk {digest}: lies outside the pack"));
        }
        if e.len as usize > MAX_CHUNK_SIZE {
            return Err(format!("chunk {digest}: length {} over the cap", e.len));
        }
        entries.push(e);
    }
    Ok((entries, pack_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SealedPack {
        let mut b = PackBuilder::new();
        for i in 0..3u8 {
            let data = vec![i + 1; 4096];
            let (codec, stored) = crate::chunk::encode(&data, 1);
            b.add(Digest::of(&data), codec, &stored, data.len());
            // A repeated chunk is stored once.
            b.add(Digest::of(&data), codec, &stored, data.len());
        }
        b.finish()
    }

    #[test]
    fn index_round_trip_and_ranged_reads() {
        let p = sample();
        assert_eq!(p.id, Digest::of(&p.data));
        let (entries, size) = decode_index(&p.index).unwrap();
        assert_eq!(entries, p.entries);
        assert_eq!(entries.len(), 3);
        assert_eq!(size, p.data.len() as u64);
        for (i, e) in entries.iter().enumerate() {
            let stored = &p.data[e.offset as usize..][..e.stored_len as usize];
            let data = crate::chunk::decode(e.codec, stored, e.len as usize).unwrap();
            assert_eq!(data, vec![i as u8 + 1; 4096]);
            assert_eq!(Digest::of(&data), e.digest);
        }
        let key = index_key(&p.id);
        assert_eq!(parse_index_key(&key), Some(p.id));
        assert_eq!(parse_pack_key(&pack_key(&p.id)), Some(p.id));
        assert_eq!(parse_index_key(&pack_key(&p.id)), None);
    }

    #[test]
    fn corrupt_indexes_are_refused() {
        let p = sample();
        let mut flipped = p.index.clone();
        flipped[30] ^= 1;
        assert!(decode_index(&flipped).unwrap_err().contains("checksum"));
        assert!(decode_index(&p.index[..20])
            .unwrap_err()
            .contains("truncated"));
        // An entry pointing past the pack, with a valid checksum.
        let mut e = p.entries.clone();
        e[0].offset = p.data.len() as u64;
        let bad = encode_index(&e, p.data.len() as u64);
        assert!(decode_index(&bad).unwrap_err().contains("outside the pack"));
    }
}
