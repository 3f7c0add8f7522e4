//! The disk tier: objects are files under a directory (the default store,
//! `/var/lib/snaprun`). Every put is written to `tmp/`, synced, renamed
//! into place, and the directory synced, so a crash leaves the old object
//! or the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_key, Tier, TierError};

/// Where temporary files live until they are renamed into place.
pub const TMP_DIR: &str = "tmp";

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory of objects.
pub struct DiskTier {
    root: PathBuf,
}

impl DiskTier {
    /// Opens (creating if needed) a store directory.
    pub fn open(root: &Path) -> Result<Self, TierError> {
        let tier = Self {
            root: root.to_path_buf(),
        };
        fs::create_dir_all(root.join(TMP_DIR)).map_err(|e| tier.io(TMP_DIR, e))?;
        Ok(tier)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn io(&self, key: &str, source: io::Error) -> TierError {
        TierError::Io {
            tier: self.name(),
            key: key.to_string(),
            source,
        }
    }

    /// Removes temporary files left by writers that died. Only safe while
    /// no writer runs (the store's GC holds the exclusive lock).
    pub fn clean_tmp(&self) -> Result<usize, TierError> {
        let dir = self.root.join(TMP_DIR);
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(|e| self.io(TMP_DIR, e))? {
            let e = e.map_err(|e| self.io(TMP_DIR, e))?;
            if fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

impl Tier for DiskTier {
    fn name(&self) -> String {
        format!("disk {}", self.root.display())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TierError> {
        check_key(self, key)?;
        match fs::read(self.path(key)) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Option<Vec<u8>>, TierError> {
        check_key(self, key)?;
        let f = match File::open(self.path(key)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(key, e)),
        };
        let size = f.metadata().map_err(|e| self.io(key, e))?.len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(TierError::Range {
                tier: self.name(),
                key: key.to_string(),
                offset,
                len,
                size,
            });
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| self.io(key, e))?;
        Ok(Some(buf))
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), TierError> {
        check_key(self, key)?;
        let path = self.path(key);
        let parent = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent).map_err(|e| self.io(key, e))?;
        let tmp = self.root.join(TMP_DIR).join(format!(
            "{}-{}-{}",
            key.replace('/', "_"),
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&parent)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io(key, e)
        })
    }

    fn has(&self, key: &str) -> Result<bool, TierError> {
        check_key(self, key)?;
        match fs::metadata(self.path(key)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.io(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, TierError> {
        // Walk the directory the prefix names (or its parent) recursively.
        let base = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let mut out = Vec::new();
        let mut stack = vec![base.to_string()];
        while let Some(rel) = stack.pop() {
            let dir = if rel.is_empty() {
                self.root.clone()
            } else {
                self.root.join(&rel)
            };
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&rel, e)),
            };
            for e in entries {
                let e = e.map_err(|e| self.io(&rel, e))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let key = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if key == TMP_DIR {
                    continue;
                }
                let ft = e.file_type().map_err(|e| self.io(&key, e))?;
                if ft.is_dir() {
                    stack.push(key);
                } else if key.starts_with(prefix) {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), TierError> {
        check_key(self, key)?;
        match fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_round_trip_on_real_files() {
        let dir = tempfile::tempdir().unwrap();
        let t = DiskTier::open(dir.path()).unwrap();
        assert_eq!(t.get("packs/a.pack").unwrap(), None);
        t.put("packs/a.pack", b"hello world").unwrap();
        t.put("refs/web/v1", b"x").unwrap();
        assert!(t.has("packs/a.pack").unwrap());
        assert_eq!(t.get("packs/a.pack").unwrap().unwrap(), b"hello world");
        assert_eq!(
            t.get_range("packs/a.pack", 6, 5).unwrap().unwrap(),
            b"world"
        );
        assert!(t.get_range("packs/a.pack", 6, 6).is_err());
        assert_eq!(t.get_range("packs/b.pack", 0, 1).unwrap(), None);
        assert_eq!(t.list("packs/").unwrap(), vec!["packs/a.pack"]);
        assert_eq!(t.list("").unwrap(), vec!["packs/a.pack", "refs/web/v1"]);
        assert_eq!(t.list("refs/").unwrap(), vec!["refs/web/v1"]);
        // Replacing is atomic and leaves no temporary file behind.
        t.put("packs/a.pack", b"new").unwrap();
        assert_eq!(t.get("packs/a.pack").unwrap().unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path().join(TMP_DIR)).unwrap().count(), 0);
        t.delete("packs/a.pack").unwrap();
        t.delete("packs/a.pack").unwrap();
        assert!(!t.has("packs/a.pack").unwrap());
        assert!(t.put("../escape", b"x").is_err());
        assert!(t.get("a//b").is_err());
    }
}
