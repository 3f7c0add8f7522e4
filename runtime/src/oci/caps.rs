//! Capabilities of `process.capabilities`: name checks, and setting the
//! five sets around the change of user.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use super::error::{Error, Result};
use super::spec::Capabilities;

fn parse_set(field: &str, names: &[String]) -> Result<CapsHashSet> {
    let mut out = HashSet::new();
    for (i, n) in names.iter().enumerate() {
        let cap = Capability::from_str(n).map_err(|_| {
            Error::invalid(format!("{field}[{i}]"), format!("unknown capability {n:?}"))
        })?;
        out.insert(cap);
    }
    Ok(out)
}

/// The parsed sets.
#[derive(Debug, Default)]
pub struct Sets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub permitted: CapsHashSet,
    pub ambient: CapsHashSet,
}

pub fn parse(c: &Capabilities) -> Result<Sets> {
    let f = "process.capabilities";
    Ok(Sets {
        bounding: parse_set(&format!("{f}.bounding"), &c.bounding)?,
        effective: parse_set(&format!("{f}.effective"), &c.effective)?,
        inheritable: parse_set(&format!("{f}.inheritable"), &c.inheritable)?,
        permitted: parse_set(&format!("{f}.permitted"), &c.permitted)?,
        ambient: parse_set(&format!("{f}.ambient"), &c.ambient)?,
    })
}

fn cap_err(what: &str) -> impl Fn(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Caps(format!("{what}: {e}"))
}

/// Drops from the bounding set what the container may not have (before the
/// change of user, while CAP_SETPCAP is still held).
pub fn drop_bounding(sets: &Sets) -> Result<()> {
    let held = caps::read(None, CapSet::Bounding).map_err(cap_err("read bounding"))?;
    for cap in held.difference(&sets.bounding) {
        caps::drop(None, CapSet::Bounding, *cap).map_err(cap_err("drop from bounding"))?;
    }
    Ok(())
}

/// Sets the permitted, inheritable and effective sets, then the ambient one
/// (after the change of user). Capabilities this runtime itself lacks (not
/// in its bounding set, e.g. CAP_SYS_RESOURCE in some sandboxes) are left
/// out with a warning, as runc does for ones the kernel does not know.
pub fn apply(sets: &Sets) -> Result<()> {
    let allowed = caps::read(None, CapSet::Bounding).map_err(cap_err("read bounding"))?;
    let keep = |s: &CapsHashSet, name: &str| -> CapsHashSet {
        for c in s.difference(&allowed) {
            tracing::warn!(cap = %c, set = name, "capability not available to the runtime: left out");
        }
        s.intersection(&allowed).copied().collect()
    };
    // Inheritable first (it may only hold what is permitted), then effective,
    // then permitted (which must keep holding the effective set).
    caps::set(
        None,
        CapSet::Inheritable,
        &keep(&sets.inheritable, "inheritable"),
    )
    .map_err(cap_err("set inheritable"))?;
    caps::set(None, CapSet::Effective, &keep(&sets.effective, "effective"))
        .map_err(cap_err("set effective"))?;
    caps::set(None, CapSet::Permitted, &keep(&sets.permitted, "permitted"))
        .map_err(cap_err("set permitted"))?;
    caps::clear(None, CapSet::Ambient).map_err(cap_err("clear ambient"))?;
    // An ambient capability must also be permitted and inheritable.
    for cap in keep(&sets.ambient, "ambient") {
        if !sets.inheritable.contains(&cap) || !sets.permitted.contains(&cap) {
            tracing::debug!(cap = %cap, "ambient capability not inheritable and permitted: left out");
            continue;
        }
        caps::raise(None, CapSet::Ambient, cap).map_err(cap_err("raise ambient"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_capability_names_its_field() {
        let c = Capabilities {
            bounding: vec!["CAP_KILL".into(), "CAP_NOPE".into()],
            ..Default::default()
        };
        let msg = parse(&c).unwrap_err().to_string();
        assert!(msg.contains("process.capabilities.bounding[1]"), "{msg}");
        assert!(msg.contains("CAP_NOPE"), "{msg}");
    }
}
