//! Named snapshots: `name:tag` -> the digest of a snapshot root, kept as
//! the object `refs/<name>/<tag>` holding the digest in hex.

use std::fmt;
use std::str::FromStr;

use crate::Digest;

pub const DEFAULT_TAG: &str = "latest";

/// `name:tag`; a name without a tag means `name:latest`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefName {
    pub name: String,
    pub tag: String,
}

#[derive(Debug, thiserror::Error)]
#[error("bad snapshot name {given:?}: {reason}")]
pub struct BadRefName {
    pub given: String,
    pub reason: &'static str,
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl FromStr for RefName {
    type Err = BadRefName;

    fn from_str(s: &str) -> Result<Self, BadRefName> {
        let (name, tag) = s.split_once(':').unwrap_or((s, DEFAULT_TAG));
        let bad = |reason| BadRefName {
            given: s.to_string(),
            reason,
        };
        if !valid_part(name) {
            return Err(bad(
                "the name must be 1-128 of [A-Za-z0-9._-], not starting with '.'",
            ));
        }
        if !valid_part(tag) {
            return Err(bad(
                "the tag must be 1-128 of [A-Za-z0-9._-], not starting with '.'",
            ));
        }
        Ok(Self {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl fmt::Display for RefName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl RefName {
    pub fn key(&self) -> String {
        format!("refs/{}/{}", self.name, self.tag)
    }

    /// The ref a key names (`refs/<name>/<tag>`).
    pub fn from_key(key: &str) -> Option<Self> {
        let rest = key.strip_prefix("refs/")?;
        let (name, tag) = rest.split_once('/')?;
        format!("{name}:{tag}").parse().ok()
    }

    /// The object a ref holds.
    pub fn encode(digest: &Digest) -> Vec<u8> {
        format!("{digest}\n").into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Digest> {
        std::str::from_utf8(bytes).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_keys() {
        let r: RefName = "web:v1".parse().unwrap();
        assert_eq!(r.key(), "refs/web/v1");
        assert_eq!(RefName::from_key("refs/web/v1"), Some(r.clone()));
        assert_eq!(r.to_string(), "web:v1");
        assert_eq!("web".parse::<RefName>().unwrap().tag, "latest");
        for bad in ["", ":x", "a:", "a/b:c", "../x", ".hidden:1", "a:b:c"] {
            assert!(bad.parse::<RefName>().is_err(), "{bad}");
        }
        let d = Digest::of(b"x");
        assert_eq!(RefName::decode(&RefName::encode(&d)), Some(d));
        assert_eq!(RefName::decode(b"nope"), None);
    }
}
