//! The per-container state directory (ROOT/ID): `state.json`, written
//! atomically, the `exec.fifo` that holds a created container's init, and a
//! copy of the config. The status is computed, never stored.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::spec::{self, Spec};
use super::{cgroups, proc};

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";
pub const CONFIG_COPY: &str = "config.json";

/// What snaprun keeps about a container between commands.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Saved {
    pub id: String,
    /// The init's pid in the runtime's pid namespace.
    pub pid: i32,
    /// The init's start time (field 22 of /proc/PID/stat), against pid reuse.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: cgroups::Cgroup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// The runtime-spec state (what `snaprun state` prints and hooks read).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A container found in the root directory.
pub struct Container {
    pub dir: PathBuf,
    pub saved: Saved,
}

/// runc's rule for ids: letters, digits, `_`, `+`, `-`, `.`, not `.` or `..`.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 1024
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadId(id.to_string()))
    }
}

/// Writes FILE atomically: a temp file in the same dir, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Self> {
        check_id(id)?;
        let dir = root.join(id);
        let path = dir.join(STATE_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(Error::io("read the state", path, e)),
        };
        let saved = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            what: format!("parse {}", path.display()),
            source,
        })?;
        Ok(Container { dir, saved })
    }

    pub fn save(dir: &Path, saved: &Saved) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(saved).map_err(|source| Error::Json {
            what: "encode the state".into(),
            source,
        })?;
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }

    pub fn id(&self) -> &str {
        &self.saved.id
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(FIFO)
    }

    /// Whether the init (the same process, by start time) still lives.
    pub fn init_alive(&self) -> bool {
        self.saved.pid > 0 && proc::alive_since(self.saved.pid, self.saved.start_time)
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.fifo().exists() {
            return Status::Created;
        }
        if self.saved.cgroup.is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    /// The config as it was at create time.
    pub fn spec(&self) -> Result<Spec> {
        let path = self.dir.join(CONFIG_COPY);
        let bytes = fs::read(&path).map_err(|e| Error::io("read the config copy", &path, e))?;
        spec::parse(&bytes, &path)
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: spec::OCI_VERSION.into(),
            id: self.saved.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.saved.pid
            },
            bundle: self.saved.bundle.clone(),
            rootfs: self.saved.rootfs.clone(),
            created: self.saved.created.clone(),
            owner: self.saved.owner.clone(),
            annotations: self.saved.annotations.clone(),
        }
    }
}

/// Every container under ROOT, by id order; unreadable entries are skipped
/// with a warning.
pub fn list(root: &Path) -> Result<Vec<Container>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read the root dir", root, e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().join(STATE_FILE).exists() {
            continue;
        }
        match Container::load(root, &name) {
            Ok(c) => out.push(c),
            Err(e) => tracing::warn!(id = %name, "skipping container: {e}"),
        }
    }
    out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
    Ok(out)
}

/// RFC 3339 UTC time with nanoseconds, like Go's time.RFC3339Nano.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["a", "web-1", "x_y.z+1"] {
            check_id(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_000_000, 0), "2026-11-18T11:06:40.000000000Z");
    }
}
