//! Chunks: fixed-size runs of bytes named by the BLAKE3 digest of their
//! uncompressed content, stored zstd-compressed (or raw when compression
//! does not pay). All-zero chunks are never stored: a [`ChunkRef`] without a
//! digest stands for `len` zero bytes.

use serde::{Deserialize, Serialize};

use crate::Digest;

/// The chunk size snapshots are cut into, chosen by measurement (see
/// docs/store.md): lazy faults do not wait on megabytes they do not need,
/// and zstd and S3 ranged reads still run at speed.
pub const DEFAULT_CHUNK_SIZE: usize = 256 << 10;
/// No chunk is larger than this; a larger length in an index is corrupt.
pub const MAX_CHUNK_SIZE: usize = 16 << 20;
/// The zstd level checkpoints use unless told otherwise.
pub const DEFAULT_LEVEL: i32 = 1;

/// One chunk of a snapshot's data, as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Uncompressed length in bytes.
    pub len: u64,
    /// BLAKE3 of the uncompressed bytes; `None` for an all-zero chunk,
    /// which is never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
}

/// How a chunk's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    Raw = 0,
    Zstd = 1,
}

impl Codec {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Raw),
            1 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Bytes compressed first, to skip chunks that will not shrink.
const PROBE: usize = 8 << 10;

/// A chunk is stored compressed only when that saves at least 1/this of
/// its bytes (10 %). Reading a zstd chunk back runs at about half the
/// speed of a raw one (docs/store.md): float weights, which zstd shrinks
/// by about 8 %, would make every restore and lazy fault pay that for
/// little space.
const MIN_SAVING: usize = 10;

/// True when `out` bytes for `len` save at least 1/[`MIN_SAVING`].
fn pays(out: usize, len: usize) -> bool {
    out * MIN_SAVING <= len * (MIN_SAVING - 1)
}

/// Compresses a chunk with zstd at `level` (0: no compression). A chunk
/// that compression does not shrink by 10 % is stored raw; one whose first
/// 8 KiB do not shrink by that much is stored raw without compressing the
/// rest: random-looking memory and weights cost a probe, not a full
/// compression.
pub fn encode(data: &[u8], level: i32) -> (Codec, Vec<u8>) {
    if level != 0 && data.len() >= 4 * PROBE {
        let probe = zstd::bulk::compress(&data[..PROBE], level).map_or(PROBE, |p| p.len());
        if !pays(probe, PROBE) {
            return (Codec::Raw, data.to_vec());
        }
    }
    if level != 0 {
        if let Ok(out) = zstd::bulk::compress(data, level) {
            if pays(out.len(), data.len()) {
                return (Codec::Zstd, out);
            }
        }
    }
    (Codec::Raw, data.to_vec())
}

thread_local! {
    /// A decompression context per thread: making one per chunk costs an
    /// allocation and its set-up on every read.
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn decompress(stored: &[u8], len: usize) -> std::io::Result<Vec<u8>> {
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match slot.as_mut() {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(stored, len)
    })
}

/// Undoes [`encode`]; `len` is the expected uncompressed length.
pub fn decode(codec: Codec, stored: &[u8], len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_CHUNK_SIZE {
        return Err(format!(
            "length {len} is over the {MAX_CHUNK_SIZE} byte cap"
        ));
    }
    match codec {
        Codec::Raw if stored.len() == len => Ok(stored.to_vec()),
        Codec::Raw => Err(format!(
            "stored {} bytes for a {len} byte raw chunk",
            stored.len()
        )),
        Codec::Zstd => {
            let out = decompress(stored, len).map_err(|e| format!("zstd: {e}"))?;
            if out.len() != len {
                return Err(format!(
                    "decompressed to {} bytes, expected {len}",
                    out.len()
                ));
            }
            Ok(out)
        }
    }
}

/// True when every byte is zero.
pub fn is_zero(data: &[u8]) -> bool {
    let (head, body, tail) = {
        // SAFETY: every bit pattern is a valid u64; align_to only splits.
        unsafe { data.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && body.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Cuts `len` bytes that start at `align_offset` (e.g. the offset within a
/// VMA) into chunks whose boundaries fall on multiples of `chunk_size`
/// counted from offset 0, so the same bytes at the same place in a mapping
/// give the same chunks in every snapshot. Returns `(start, end)` ranges
/// relative to the data.
pub fn split(align_offset: u64, len: usize, chunk_size: usize) -> Vec<(usize, usize)> {
    let cs = chunk_size as u64;
    let mut out = Vec::with_capacity(len / chunk_size + 2);
    let mut pos = 0usize;
    while pos < len {
        let abs = align_offset + pos as u64;
        let next = (abs / cs + 1) * cs;
        let end = ((next - align_offset) as usize).min(len);
        out.push((pos, end));
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_aligns_to_chunk_boundaries() {
        assert_eq!(split(0, 10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(split(6, 10, 4), vec![(0, 2), (2, 6), (6, 10)]);
        assert_eq!(split(8, 4, 4), vec![(0, 4)]);
        assert!(split(3, 0, 4).is_empty());
    }

    #[test]
    fn encode_decode_round_trip_and_raw_fallback() {
        let text = b"abcabcabc".repeat(1000);
        let (codec, stored) = encode(&text, 3);
        assert_eq!(codec, Codec::Zstd);
        assert!(stored.len() < text.len());
        assert_eq!(decode(codec, &stored, text.len()).unwrap(), text);
        // Incompressible bytes are stored raw.
        let noise: Vec<u8> = (0..4096u32)
            .flat_map(|i| blake3::hash(&i.to_le_bytes()).as_bytes().to_vec())
            .collect();
        let (codec, stored) = encode(&noise, 3);
        assert_eq!(codec, Codec::Raw);
        assert_eq!(decode(codec, &stored, noise.len()).unwrap(), noise);
        // A large random chunk is stored raw after the probe; a large
        // compressible one is compressed.
        let big_noise: Vec<u8> = (0..16384u32)
            .flat_map(|i| blake3::hash(&i.to_le_bytes()).as_bytes().to_vec())
            .collect();
        assert_eq!(encode(&big_noise, 1).0, Codec::Raw);
        assert_eq!(encode(&b"abcd".repeat(1 << 16), 1).0, Codec::Zstd);
        // Level 0 means no compression.
        assert_eq!(encode(&text, 0).0, Codec::Raw);
        // Wrong lengths and garbage are errors, not panics.
        assert!(decode(Codec::Zstd, &stored[..100], 4096).is_err());
        assert!(decode(Codec::Raw, &stored, 5).is_err());
        assert!(decode(Codec::Zstd, b"garbage", MAX_CHUNK_SIZE + 1).is_err());
    }

    /// Float32 weights (normal, as a model's) shrink by under 10 % with
    /// zstd: stored raw, so reading them back costs no decompression.
    #[test]
    fn weights_are_stored_raw_and_text_compressed() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut uniform = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let weights: Vec<u8> = (0..DEFAULT_CHUNK_SIZE / 4)
            .flat_map(|_| {
                let (u, v) = (uniform(), uniform());
                let n = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                ((n * 0.02) as f32).to_le_bytes()
            })
            .collect();
        let full = zstd::bulk::compress(&weights, DEFAULT_LEVEL).unwrap().len();
        assert!(full < weights.len(), "zstd does shrink them ({full})");
        assert!(!pays(full, weights.len()), "but by under 10 % ({full})");
        assert_eq!(encode(&weights, DEFAULT_LEVEL).0, Codec::Raw);
        // Just above and below the line.
        assert!(pays(90, 100) && !pays(91, 100));
        let text = b"snaprun restores a warmed inference process. ".repeat(6000);
        assert_eq!(encode(&text, DEFAULT_LEVEL).0, Codec::Zstd);
    }

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 8195];
        assert!(is_zero(&v));
        assert!(is_zero(&v[1..]));
        v[8194] = 1;
        assert!(!is_zero(&v));
        v[8194] = 0;
        v[3] = 1;
        assert!(!is_zero(&v[1..]));
    }
}
