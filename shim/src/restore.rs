//! Restore-on-create: a container whose annotations (or the shim's options)
//! name a snapshot starts by restoring it instead of running its entrypoint.
//!
//! - `io.snaprun.snapshot=NAME:TAG`: the snapshot;
//! - `io.snaprun.store=DIR`: its store (else the shim's `store`, else
//!   $SNAPRUN_STORE, else /var/lib/snaprun);
//! - `io.snaprun.fallback=cold`: when the snapshot is missing or its
//!   restore fails, start the container normally instead of failing.
//!
//! A malformed annotation always fails the create: it is a mistake in the
//! pod's spec, not a snapshot that went away.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use snaprun_store::{store_dir, RefName, Store};

use crate::error::{Error, Result};
use crate::options::ShimConfig;

pub const SNAPSHOT: &str = "io.snaprun.snapshot";
pub const STORE: &str = "io.snaprun.store";
pub const FALLBACK: &str = "io.snaprun.fallback";

/// What to do when the snapshot cannot be restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Fail the create, saying why.
    Fail,
    /// Start the container's entrypoint instead, saying why.
    Cold,
}

/// A container's request to start from a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub snapshot: RefName,
    pub store: PathBuf,
    pub fallback: Fallback,
}

fn parse_fallback(value: &str, from: &str) -> Result<Fallback> {
    match value {
        "cold" => Ok(Fallback::Cold),
        "none" | "" => Ok(Fallback::Fail),
        other => Err(Error::invalid(
            from,
            format!("{other:?} is not a fallback (use \"cold\", or leave it out)"),
        )),
    }
}

/// The restore a container asks for, if any: its annotations first, then
/// the shim's options.
pub fn request(
    annotations: &HashMap<String, String>,
    config: &ShimConfig,
) -> Result<Option<Request>> {
    let (name, from) = match (annotations.get(SNAPSHOT), &config.snapshot) {
        (Some(n), _) => (n.clone(), format!("annotation {SNAPSHOT}")),
        (None, Some(n)) => (n.clone(), "shim option snapshot".to_string()),
        (None, None) => {
            for key in [STORE, FALLBACK] {
                if annotations.contains_key(key) {
                    tracing::warn!(annotation = key, "ignored: no {SNAPSHOT} annotation");
                }
            }
            return Ok(None);
        }
    };
    if !name.contains(':') {
        return Err(Error::invalid(
            format!("{from}={name:?}"),
            "a snapshot is named NAME:TAG",
        ));
    }
    let snapshot: RefName = name.parse().map_err(|e: snaprun_store::BadRefName| {
        Error::invalid(format!("{from}={name:?}"), e.to_string())
    })?;
    let store = match annotations.get(STORE) {
        Some(dir) if dir.is_empty() || !Path::new(dir).is_absolute() => {
            return Err(Error::invalid(
                format!("annotation {STORE}={dir:?}"),
                "the store must be an absolute path",
            ))
        }
        Some(dir) => PathBuf::from(dir),
        None => store_dir(config.store.as_deref()),
    };
    let fallback = match (annotations.get(FALLBACK), &config.fallback) {
        (Some(v), _) => parse_fallback(v, &format!("annotation {FALLBACK}"))?,
        (None, Some(v)) => parse_fallback(v, "shim option fallback")?,
        (None, None) => Fallback::Fail,
    };
    Ok(Some(Request {
        snapshot,
        store,
        fallback,
    }))
}

/// Checks that the snapshot is in its store (without creating the store).
pub fn check_present(req: &Request) -> std::result::Result<(), String> {
    if !req.store.is_dir() {
        return Err(format!(
            "snapshot {}: the store {} does not exist",
            req.snapshot,
            req.store.display()
        ));
    }
    let store = Store::open(&req.store).map_err(|e| {
        format!(
            "snapshot {}: cannot open the store {}: {e}",
            req.snapshot,
            req.store.display()
        )
    })?;
    store
        .open_snapshot(&req.snapshot)
        .map(drop)
        .map_err(|e| format!("snapshot {} in {}: {e}", req.snapshot, req.store.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_snapshot_no_request() {
        let r = request(&ann(&[(FALLBACK, "cold")]), &ShimConfig::default()).unwrap();
        assert!(r.is_none());
    }

    #[test]
    fn annotations_name_the_snapshot_store_and_fallback() {
        let r = request(
            &ann(&[
                (SNAPSHOT, "model:v1"),
                (STORE, "/srv/s"),
                (FALLBACK, "cold"),
            ]),
            &ShimConfig::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.snapshot.to_string(), "model:v1");
        assert_eq!(r.store, PathBuf::from("/srv/s"));
        assert_eq!(r.fallback, Fallback::Cold);
    }

    #[test]
    fn shim_options_give_defaults_that_annotations_override() {
        let config = ShimConfig {
            store: Some("/srv/default".into()),
            snapshot: Some("base:v1".into()),
            fallback: Some("cold".into()),
            ..Default::default()
        };
        let r = request(&ann(&[]), &config).unwrap().unwrap();
        assert_eq!(r.snapshot.to_string(), "base:v1");
        assert_eq!(r.store, PathBuf::from("/srv/default"));
        assert_eq!(r.fallback, Fallback::Cold);
        let r = request(&ann(&[(SNAPSHOT, "other:v2"), (FALLBACK, "none")]), &config)
            .unwrap()
            .unwrap();
        assert_eq!(r.snapshot.to_string(), "other:v2");
        assert_eq!(r.fallback, Fallback::Fail);
    }

    #[test]
    fn malformed_annotations_say_what_is_wrong() {
        let cfg = ShimConfig::default();
        let e = request(&ann(&[(SNAPSHOT, "model")]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("io.snaprun.snapshot") && e.contains("NAME:TAG"),
            "{e}"
        );
        let e = request(&ann(&[(SNAPSHOT, "mo del:v1")]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("the name must be"), "{e}");
        let e = request(&ann(&[(SNAPSHOT, "m:v1"), (FALLBACK, "warm")]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"warm\" is not a fallback"), "{e}");
        let e = request(&ann(&[(SNAPSHOT, "m:v1"), (STORE, "rel/dir")]), &cfg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }

    #[test]
    fn a_missing_store_or_snapshot_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut req = Request {
            snapshot: "model:v1".parse().unwrap(),
            store: dir.path().join("nope"),
            fallback: Fallback::Fail,
        };
        let e = check_present(&req).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        assert!(!req.store.exists(), "the check created the store");
        req.store = dir.path().to_path_buf();
        let e = check_present(&req).unwrap_err();
        assert!(e.contains("model:v1"), "{e}");
    }
}
