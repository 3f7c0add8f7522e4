//! GPU UUIDs as `nvidia-smi -L` and `/proc/driver/nvidia/gpus/*/information`
//! print them (`GPU-8-4-4-4-12` hex digits), and the GPU map given to a
//! restore (`OLD=NEW`).

use std::fmt;
use std::str::FromStr;

use crate::ffi::{CUcheckpointGpuPair, CUuuid};

/// A GPU's UUID: the 16 bytes of `CUuuid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuUuid(pub [u8; 16]);

/// A GPU UUID or GPU map that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{text:?} is not a GPU UUID: {reason} (expected GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, as nvidia-smi -L prints)")]
    Uuid { text: String, reason: String },
    #[error("{text:?} is not a GPU mapping: expected OLD=NEW, two GPU UUIDs")]
    Pair { text: String },
    #[error("GPU map: {uuid} is mapped twice")]
    Duplicate { uuid: GpuUuid },
}

impl GpuUuid {
    pub fn to_cu(self) -> CUuuid {
        CUuuid {
            bytes: self.0.map(|b| b as std::ffi::c_char),
        }
    }

    pub fn from_cu(u: &CUuuid) -> GpuUuid {
        GpuUuid(u.bytes.map(|b| b as u8))
    }
}

impl fmt::Display for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GPU-")?;
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for GpuUuid {
    type Err = ParseError;

    /// Takes `GPU-` followed by 32 hex digits, with the dashes where
    /// `nvidia-smi` puts them or none at all; the `GPU-` prefix may be left
    /// out. MIG instance UUIDs (`MIG-…`) are not GPU UUIDs.
    fn from_str(text: &str) -> Result<GpuUuid, ParseError> {
        let err = |reason: &str| ParseError::Uuid {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let t = text.trim();
        let t = t.strip_prefix("GPU-").unwrap_or(t);
        if t.starts_with("MIG-") {
            return Err(err("MIG instances cannot be remapped"));
        }
        let hex: String = if t.contains('-') {
            let groups: Vec<&str> = t.split('-').collect();
            let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
            if lens != [8, 4, 4, 4, 12] {
                return Err(err("the dashes are not at 8-4-4-4-12"));
            }
            groups.concat()
        } else {
            t.to_string()
        };
        if hex.len() != 32 {
            return Err(err(&format!("{} hex digits, not 32", hex.len())));
        }
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| err("not a hex digit"))?;
        }
        Ok(GpuUuid(bytes))
    }
}

/// Restore what ran on `old` onto `new`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuPair {
    pub old: GpuUuid,
    pub new: GpuUuid,
}

impl GpuPair {
    pub fn to_cu(self) -> CUcheckpointGpuPair {
        CUcheckpointGpuPair {
            old_uuid: self.old.to_cu(),
            new_uuid: self.new.to_cu(),
        }
    }
}

impl fmt::Display for GpuPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.old, self.new)
    }
}

impl FromStr for GpuPair {
    type Err = ParseError;

    /// `OLD=NEW`.
    fn from_str(text: &str) -> Result<GpuPair, ParseError> {
        let (old, new) = text.split_once('=').ok_or_else(|| ParseError::Pair {
            text: text.to_string(),
        })?;
        Ok(GpuPair {
            old: old.parse()?,
            new: new.parse()?,
        })
    }
}

/// The pairs to give the driver for a process that ran on `recorded`
/// GPUs: the driver wants every checkpointed GPU in the array once one is
/// given, so a GPU the map leaves out is mapped onto itself. An empty map
/// gives no pairs (the driver restores onto the same GPUs). A GPU mapped
/// twice is refused; a pair for a GPU the process did not use is kept
/// (the recorded list may be incomplete).
pub fn complete_map(recorded: &[GpuUuid], map: &[GpuPair]) -> Result<Vec<GpuPair>, ParseError> {
    for (i, p) in map.iter().enumerate() {
        if map[..i].iter().any(|q| q.old == p.old) {
            return Err(ParseError::Duplicate { uuid: p.old });
        }
    }
    if map.is_empty() {
        return Ok(Vec::new());
    }
    let mut pairs = map.to_vec();
    for &u in recorded {
        if !map.iter().any(|p| p.old == u) {
            pairs.push(GpuPair { old: u, new: u });
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "GPU-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a10";
    const B: &str = "GPU-00112233-4455-6677-8899-aabbccddeeff";

    #[test]
    fn uuid_round_trips_through_its_text() {
        let u: GpuUuid = A.parse().unwrap();
        assert_eq!(u.to_string(), A);
        assert_eq!(u.0[0], 0x5a);
        assert_eq!(u.0[15], 0x10);
        let bare: GpuUuid = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
        assert_eq!(bare.to_string(), B);
        let no_prefix: GpuUuid = B.trim_start_matches("GPU-").parse().unwrap();
        assert_eq!(no_prefix, bare);
        assert_eq!(GpuUuid::from_cu(&bare.to_cu()), bare);
    }

    #[test]
    fn bad_uuids_say_why() {
        let e = "GPU-1234".parse::<GpuUuid>().unwrap_err().to_string();
        assert!(
            e.contains("\"GPU-1234\"") && e.contains("4 hex digits, not 32"),
            "{e}"
        );
        let e = "GPU-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a1g"
            .parse::<GpuUuid>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a hex digit"), "{e}");
        let e = "MIG-5a4f3c2e-1b0d-4e9f-8a7b-6c5d4e3f2a10"
            .parse::<GpuUuid>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("MIG"), "{e}");
        let e = "GPU-5a4f3c2e1b0d-4e9f-8a7b-6c5d4e3f2a10"
            .parse::<GpuUuid>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("8-4-4-4-12"), "{e}");
    }

    #[test]
    fn pairs_parse_as_old_equals_new() {
        let p: GpuPair = format!("{A}={B}").parse().unwrap();
        assert_eq!(p.old.to_string(), A);
        assert_eq!(p.new.to_string(), B);
        assert_eq!(p.to_string(), format!("{A}={B}"));
        let cu = p.to_cu();
        assert_eq!(GpuUuid::from_cu(&cu.old_uuid), p.old);
        assert_eq!(GpuUuid::from_cu(&cu.new_uuid), p.new);
        assert!(matches!(A.parse::<GpuPair>(), Err(ParseError::Pair { .. })));
        assert!(matches!(
            format!("{A}=nope").parse::<GpuPair>(),
            Err(ParseError::Uuid { .. })
        ));
    }

    #[test]
    fn the_map_is_completed_with_identity_pairs() {
        let a: GpuUuid = A.parse().unwrap();
        let b: GpuUuid = B.parse().unwrap();
        let c = GpuUuid([7; 16]);
        // No map: no pairs, the driver restores in place.
        assert_eq!(complete_map(&[a, b], &[]).unwrap(), vec![]);
        // a -> c given: b must still be named, onto itself.
        let pairs = complete_map(&[a, b], &[GpuPair { old: a, new: c }]).unwrap();
        assert_eq!(
            pairs,
            vec![GpuPair { old: a, new: c }, GpuPair { old: b, new: b }]
        );
        // a mapped twice.
        let e = complete_map(
            &[a],
            &[GpuPair { old: a, new: c }, GpuPair { old: a, new: b }],
        )
        .unwrap_err();
        assert_eq!(e, ParseError::Duplicate { uuid: a });
    }
}
