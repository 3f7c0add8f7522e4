//! Snapshot roots: the object a ref names. A root holds the list of every
//! chunk the snapshot references (what GC and push read, without knowing
//! the engine's manifest) and the engine's manifest bytes, opaque here.
//!
//! `snapshots/<digest>`, where `<digest>` is BLAKE3 of the whole object:
//! `SNAPROOT`, u32 version, u32 chunk count, the chunk digests (32 bytes
//! each), then the manifest bytes to the end.

use crate::Digest;

pub const ROOT_MAGIC: &[u8; 8] = b"SNAPROOT";
pub const ROOT_VERSION: u32 = 1;
/// Roots larger than this are refused before parsing.
pub const MAX_ROOT_SIZE: usize = 512 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root {
    /// Every distinct chunk the snapshot references (zero chunks excluded).
    pub chunks: Vec<Digest>,
    /// The engine's manifest, as it wrote it.
    pub manifest: Vec<u8>,
}

pub fn root_key(digest: &Digest) -> String {
    format!("snapshots/{digest}")
}

pub fn parse_root_key(key: &str) -> Option<Digest> {
    key.strip_prefix("snapshots/")?.parse().ok()
}

impl Root {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.chunks.len() * 32 + self.manifest.len());
        out.extend_from_slice(ROOT_MAGIC);
        out.extend_from_slice(&ROOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for d in &self.chunks {
            out.extend_from_slice(&d.0);
        }
        out.extend_from_slice(&self.manifest);
        out
    }

    /// Parses a root and checks it against the digest that names it.
    pub fn decode(digest: &Digest, bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_ROOT_SIZE {
            return Err(format!(
                "{} bytes is over the {MAX_ROOT_SIZE} byte cap",
                bytes.len()
            ));
        }
        if Digest::of(bytes) != *digest {
            return Err("content does not match its digest".into());
        }
        if bytes.len() < 16 || &bytes[..8] != ROOT_MAGIC {
            return Err("bad magic".into());
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != ROOT_VERSION {
            return Err(format!(
                "version {version} is not supported (this snaprun reads {ROOT_VERSION})"
            ));
        }
        let count = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        let end = 16 + count * 32;
        if bytes.len() < end {
            return Err(format!(
                "truncated: {count} chunks in {} bytes",
                bytes.len()
            ));
        }
        let chunks = bytes[16..end]
            .chunks_exact(32)
            .map(|c| Digest(c.try_into().expect("32 bytes")))
            .collect();
        Ok(Self {
            chunks,
            manifest: bytes[end..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checks() {
        let root = Root {
            chunks: vec![Digest::of(b"a"), Digest::of(b"b")],
            manifest: b"{\"x\":1}".to_vec(),
        };
        let bytes = root.encode();
        let d = Digest::of(&bytes);
        assert_eq!(Root::decode(&d, &bytes).unwrap(), root);
        assert_eq!(parse_root_key(&root_key(&d)), Some(d));
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        assert!(Root::decode(&d, &bad).unwrap_err().contains("digest"));
        let short = &bytes[..40];
        assert!(Root::decode(&Digest::of(short), short)
            .unwrap_err()
            .contains("truncated"));
    }
}
