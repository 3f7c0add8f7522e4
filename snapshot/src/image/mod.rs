//! The snapshot image on disk: a checksummed, versioned manifest
//! (`manifest.json`) and a pages file holding the dumped bytes, each run
//! named and verified by its BLAKE3 digest.
//!
//! Crash safety: the pages file is written under a new name, synced, then
//! the manifest is written to a temporary file, synced and renamed over
//! `manifest.json`, and the directory synced. Until that rename the
//! previous snapshot in the directory (its manifest and its pages file) is
//! untouched; stale pages files are removed only afterwards.

mod manifest;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use manifest::*;

/// Identifies a snaprun manifest.
pub const MAGIC: &str = "snaprun-snapshot";
/// The format version this build writes and reads. Independent of the
/// release version.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifests larger than this are refused before parsing.
pub const MANIFEST_MAX: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a snapshot: no {MANIFEST_FILE}")]
    NoManifest { path: PathBuf },
    #[error("{path}: corrupt manifest: {reason}")]
    BadManifest { path: PathBuf, reason: String },
    #[error("{path}: format version {found} is not supported (this snaprun reads version {FORMAT_VERSION})")]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: truncated: {size} bytes, the manifest says {expected}")]
    Truncated {
        path: PathBuf,
        size: u64,
        expected: u64,
    },
    #[error("{path}: corrupt chunk {digest} at offset {offset} (+{len}): content does not match its digest")]
    CorruptChunk {
        path: PathBuf,
        digest: String,
        offset: u64,
        len: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    magic: String,
    format_version: u32,
    /// `blake3:` + hex digest of the manifest's canonical JSON.
    checksum: String,
    manifest: serde_json::Value,
}

fn manifest_checksum(manifest: &Manifest) -> String {
    let canonical = serde_json::to_vec(manifest).expect("manifest serializes");
    format!("blake3:{}", blake3::hash(&canonical).to_hex())
}

/// Writes a new snapshot into a directory.
pub struct ImageWriter {
    dir: PathBuf,
    pages_name: String,
    pages_tmp: PathBuf,
    pages: File,
    offset: u64,
}

impl ImageWriter {
    pub fn create(dir: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let pages_name = format!("pages-{stamp:x}-{}.img", std::process::id());
        let pages_tmp = dir.join(format!("{pages_name}.tmp"));
        let pages = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&pages_tmp)
            .map_err(io_err(&pages_tmp))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            pages_name,
            pages_tmp,
            pages,
            offset: 0,
        })
    }

    /// Appends bytes to the pages file and returns where they are and
    /// their digest. `vma_offset` is left 0 for the caller to set.
    pub fn add(&mut self, data: &[u8]) -> Result<PageRun, ImageError> {
        self.pages
            .write_all(data)
            .map_err(io_err(&self.pages_tmp))?;
        let run = PageRun {
            vma_offset: 0,
            len: data.len() as u64,
            data_offset: self.offset,
            digest: blake3::hash(data).to_hex().to_string(),
        };
        self.offset += data.len() as u64;
        Ok(run)
    }

    /// Bytes written to the pages file so far.
    pub fn written(&self) -> u64 {
        self.offset
    }

    /// Makes the snapshot durable: pages synced, then the manifest written
    /// and atomically renamed into place, then the directory synced.
    pub fn finish(self, mut manifest: Manifest) -> Result<(), ImageError> {
        let dir = &self.dir;
        self.pages.sync_all().map_err(io_err(&self.pages_tmp))?;
        drop(self.pages);
        let pages_path = dir.join(&self.pages_name);
        fs::rename(&self.pages_tmp, &pages_path).map_err(io_err(&pages_path))?;
        // The pages file's name must be durable before a manifest names it.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        manifest.pages = PagesFile {
            file: self.pages_name.clone(),
            size: self.offset,
        };
        let envelope = Envelope {
            magic: MAGIC.to_string(),
            format_version: FORMAT_VERSION,
            checksum: manifest_checksum(&manifest),
            manifest: serde_json::to_value(&manifest).expect("manifest serializes"),
        };
        let text = serde_json::to_vec_pretty(&envelope).expect("envelope serializes");
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp-{}", std::process::id()));
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&text).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        let final_path = dir.join(MANIFEST_FILE);
        fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
        // The new manifest is in place: older pages files are garbage.
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("pages-") && name.ends_with(".img") && name != self.pages_name {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Removes the partial pages file of a checkpoint that failed.
    pub fn abandon(self) {
        let _ = fs::remove_file(&self.pages_tmp);
    }
}

/// A snapshot opened for reading: the verified manifest and its pages file.
pub struct Image {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pages_path: PathBuf,
    pages: File,
}

impl Image {
    pub fn open(dir: &Path) -> Result<Self, ImageError> {
        let path = dir.join(MANIFEST_FILE);
        let meta = match fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NoManifest {
                    path: dir.to_path_buf(),
                })
            }
            r => r.map_err(io_err(&path))?,
        };
        let bad = |reason: String| ImageError::BadManifest {
            path: path.clone(),
            reason,
        };
        if meta.len() > MANIFEST_MAX {
            return Err(bad(format!(
                "{} bytes is over the {MANIFEST_MAX} byte cap",
                meta.len()
            )));
        }
        let text = fs::read(&path).map_err(io_err(&path))?;
        let envelope: Envelope =
            serde_json::from_slice(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if envelope.magic != MAGIC {
            return Err(bad(format!("magic is {:?}, not {MAGIC:?}", envelope.magic)));
        }
        if envelope.format_version != FORMAT_VERSION {
            return Err(ImageError::Version {
                path,
                found: envelope.format_version,
            });
        }
        let manifest: Manifest = serde_json::from_value(envelope.manifest)
            .map_err(|e| bad(format!("does not match format {FORMAT_VERSION}: {e}")))?;
        let sum = manifest_checksum(&manifest);
        if sum != envelope.checksum {
            return Err(bad(format!(
                "checksum mismatch (recorded {}, computed {sum})",
                envelope.checksum
            )));
        }
        validate(&manifest).map_err(bad)?;
        let pages_path = dir.join(&manifest.pages.file);
        let pages = File::open(&pages_path).map_err(io_err(&pages_path))?;
        let size = pages.metadata().map_err(io_err(&pages_path))?.len();
        if size != manifest.pages.size {
            return Err(ImageError::Truncated {
                path: pages_path,
                size,
                expected: manifest.pages.size,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            pages_path,
            pages,
        })
    }

    /// Reads a run's bytes into `buf` (resized to fit) and verifies them
    /// against the run's digest.
    pub fn read_run(&self, run: &PageRun, buf: &mut Vec<u8>) -> Result<(), ImageError> {
        buf.resize(run.len as usize, 0);
        self.pages
            .read_exact_at(buf, run.data_offset)
            .map_err(io_err(&self.pages_path))?;
        if blake3::hash(buf).to_hex().as_str() != run.digest {
            return Err(ImageError::CorruptChunk {
                path: self.pages_path.clone(),
                digest: run.digest.clone(),
                offset: run.data_offset,
                len: run.len,
            });
        }
        Ok(())
    }
}

/// Structural checks, so that nothing later trusts a bad offset.
fn validate(m: &Manifest) -> Result<(), String> {
    if m.processes.is_empty() {
        return Err("no processes".into());
    }
    if m.pages.file.contains('/') || m.pages.file.is_empty() {
        return Err(format!("bad pages file name {:?}", m.pages.file));
    }
    let page = crate::sys::PAGE_SIZE;
    let check_run = |run: &PageRun, what: &str| -> Result<(), String> {
        let end = run.data_offset.checked_add(run.len);
        if end.is_none_or(|e| e > m.pages.size) {
            return Err(format!(
                "{what}: run {} lies outside the pages file",
                run.digest
            ));
        }
        if run.digest.len() != 64 {
            return Err(format!("{what}: bad digest {:?}", run.digest));
        }
        Ok(())
    };
    for p in &m.processes {
        if p.threads.len() != 1 {
            return Err(format!(
                "pid {}: {} threads; this snaprun restores single-threaded processes",
                p.pid,
                p.threads.len()
            ));
        }
        let mut prev_end = 0;
        for v in &p.vmas {
            let what = format!("pid {} vma {:x}-{:x}", p.pid, v.start, v.end);
            if v.start % page != 0 || v.end % page != 0 || v.end <= v.start || v.start < prev_end {
                return Err(format!("{what}: misaligned, empty or overlapping"));
            }
            prev_end = v.end;
            if matches!(v.kind, VmaKind::Memfd | VmaKind::MemfdPrivate)
                && !p.memfds.iter().any(|m| m.inode == v.shmem_inode)
            {
                return Err(format!("{what}: memfd inode {} unknown", v.shmem_inode));
            }
            for r in &v.runs {
                check_run(r, &what)?;
                if r.vma_offset % page != 0
                    || r.len % page != 0
                    || r.vma_offset.checked_add(r.len).is_none_or(|e| e > v.len())
                {
                    return Err(format!("{what}: run {} outside the vma", r.digest));
                }
            }
        }
        for m in &p.memfds {
            for r in &m.runs {
                check_run(r, &format!("pid {} memfd inode {}", p.pid, m.inode))?;
            }
        }
        for f in &p.files {
            match &f.kind {
                FileKind::Memfd { inode, .. } if !p.memfds.iter().any(|m| m.inode == *inode) => {
                    return Err(format!(
                        "pid {} file {}: memfd inode {inode} unknown",
                        p.pid, f.id
                    ));
                }
                FileKind::Pipe { data: Some(r), .. } | FileKind::Fifo { data: Some(r), .. } => {
                    check_run(r, &format!("pid {} file {}", p.pid, f.id))?;
                }
                FileKind::Deleted { size, data, .. } => {
                    let what = format!("pid {} file {}", p.pid, f.id);
                    if let Some(r) = data {
                        check_run(r, &what)?;
                    }
                    let stored = data.as_ref().map_or(0, |r| r.len);
                    if stored != *size {
                        return Err(format!(
                            "{what}: deleted file of {size} bytes with {stored} stored"
                        ));
                    }
                }
                FileKind::Epoll { targets } => {
                    if let Some(t) = targets
                        .iter()
                        .find(|t| !p.files.iter().any(|g| g.id == t.file))
                    {
                        return Err(format!(
                            "pid {} file {}: epoll target fd {} names unknown file {}",
                            p.pid, f.id, t.fd, t.file
                        ));
                    }
                }
                _ => {}
            }
        }
        for fd in &p.fds {
            if !p.files.iter().any(|f| f.id == fd.file) {
                return Err(format!(
                    "pid {} fd {}: unknown file {}",
                    p.pid, fd.fd, fd.file
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
