//! Tiers: places that hold the store's objects (packs, pack indexes,
//! snapshot roots, refs), behind one trait. A [`Store`](crate::Store)
//! reads through them fastest first and fills the faster ones.

mod disk;
mod ram;
#[cfg(feature = "s3")]
mod s3;

use std::io;

pub use disk::DiskTier;
pub use ram::RamTier;
#[cfg(feature = "s3")]
pub use s3::{S3Config, S3Tier};

#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("{tier}: {key}: {source}")]
    Io {
        tier: String,
        key: String,
        source: io::Error,
    },
    #[error("{tier}: {key}: {message}")]
    Remote {
        tier: String,
        key: String,
        message: String,
    },
    #[error("{tier}: {key}: range {offset}+{len} lies outside the object ({size} bytes)")]
    Range {
        tier: String,
        key: String,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{tier}: bad key {key:?}")]
    BadKey { tier: String, key: String },
    #[error("{what}: not available in this build: {reason}")]
    NotAvailable { what: String, reason: String },
}

/// A place that holds named objects. Keys are relative paths
/// (`packs/<id>.pack`, `refs/<name>/<tag>`) of `[A-Za-z0-9._-]` segments.
///
/// Invariant every implementation keeps: an object is visible whole or not
/// at all (a crash during `put` leaves the old object, or none), and once
/// `put` returns the object is durable.
pub trait Tier: Send + Sync {
    /// The tier for messages: `ram`, `disk /var/lib/snaprun`,
    /// `s3 s3://bucket/prefix`.
    fn name(&self) -> String;
    /// The whole object, or `None` when there is no such key.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError>;
    /// `len` bytes at `offset`, or `None` when there is no such key; a
    /// range past the end is an error.
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, TierError>;
    /// Stores an object whole and durably, replacing any old one.
    fn put(&self, key: &str, data: &[u8]) -> Result<(), TierError>;
    fn has(&self, key: &str) -> Result<bool, TierError>;
    /// Every key that starts with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, TierError>;
    /// Removes an object; removing a missing key is not an error.
    fn delete(&self, key: &str) -> Result<(), TierError>;
}

/// Checks that a key is a relative path of safe segments.
pub(crate) fn check_key(tier: &dyn Tier, key: &str) -> Result<(), TierError> {
    let ok = !key.is_empty()
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(TierError::BadKey {
            tier: tier.name(),
            key: key.to_string(),
        })
    }
}

/// Opens a remote tier from a URL: `s3://bucket/prefix` (with the AWS_*
/// environment) or `file:///path` (a directory, e.g. a shared mount).
pub fn open_remote(url: &str) -> Result<std::sync::Arc<dyn Tier>, TierError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(std::sync::Arc::new(DiskTier::open(std::path::Path::new(
            path,
        ))?));
    }
    if url.starts_with("s3://") {
        #[cfg(feature = "s3")]
        return Ok(std::sync::Arc::new(S3Tier::from_url(url)?));
        #[cfg(not(feature = "s3"))]
        return Err(TierError::NotAvailable {
            what: url.to_string(),
            reason: "snaprun-store was built without the s3 feature".into(),
        });
    }
    Err(TierError::Remote {
        tier: "remote".into(),
        key: url.to_string(),
        message: "want s3://bucket/prefix or file:///path".into(),
    })
}
