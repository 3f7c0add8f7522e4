//! The store lock: `STORE/lock`, taken with flock(2). Writers (a running
//! checkpoint, a pull, a fill of the disk tier) hold it shared from their
//! first chunk to their ref; GC holds it exclusive. So GC never runs while a
//! writer may be about to reference a chunk it decided was dead.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "lock";

/// A held lock; released when dropped (the file is closed).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("store lock {path}: {source}")]
pub struct LockError {
    pub path: PathBuf,
    pub source: io::Error,
}

impl StoreLock {
    /// Waits for the lock: `exclusive` for GC, shared for writers.
    pub fn acquire(store: &Path, exclusive: bool) -> Result<Self, LockError> {
        Self::take(store, exclusive, true).map(|l| l.expect("blocking lock"))
    }

    /// Takes the lock if free now; `None` when someone holds it.
    pub fn try_acquire(store: &Path, exclusive: bool) -> Result<Option<Self>, LockError> {
        Self::take(store, exclusive, false)
    }

    fn take(store: &Path, exclusive: bool, wait: bool) -> Result<Option<Self>, LockError> {
        let path = store.join(LOCK_FILE);
        let err = |source| LockError {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        let mut op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        if !wait {
            op |= libc::LOCK_NB;
        }
        loop {
            // SAFETY: flock on an fd this function owns; no memory is passed.
            let r = unsafe { libc::flock(file.as_raw_fd(), op) };
            if r == 0 {
                return Ok(Some(Self { _file: file }));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !wait => return Ok(None),
                _ => return Err(err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_excludes_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let a = StoreLock::acquire(dir.path(), false).unwrap();
        let b = StoreLock::try_acquire(dir.path(), false).unwrap();
        assert!(b.is_some());
        assert!(StoreLock::try_acquire(dir.path(), true).unwrap().is_none());
        drop(a);
        drop(b);
        let x = StoreLock::try_acquire(dir.path(), true).unwrap();
        assert!(x.is_some());
        assert!(StoreLock::try_acquire(dir.path(), false).unwrap().is_none());
    }
}
