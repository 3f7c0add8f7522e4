//! The snapshot image: a checksummed, versioned manifest whose page runs
//! are lists of chunks in the snapshot store (`snaprun-store`). The engine
//! writes and reads page data only through this module, and this module
//! only through the store's API (`SnapshotWriter::add`/`commit`,
//! `Store::read_chunks`).
//!
//! Where a snapshot lives ([`ImageTarget`]):
//! - a store and a name (`--to NAME:TAG`): the envelope is the root's
//!   manifest bytes, the name the ref;
//! - an image directory (`--image-path DIR`): DIR is a store of its own,
//!   holding one snapshot; `DIR/manifest.json` is the envelope, written
//!   last (temp file, fsync, rename), and the chunks of the snapshot it
//!   replaced are collected after it is in place.

mod manifest;
mod socket;

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use manifest::*;
use snaprun_store::chunk::MAX_CHUNK_SIZE;
pub use snaprun_store::{ChunkRef, Digest, RefName, Store, StoreError, WriteStats};
use snaprun_store::{Progress, SnapshotWriter, StoreOptions};
pub use socket::*;

/// Identifies a snaprun manifest.
pub const MAGIC: &str = "snaprun-snapshot";
/// The format version this build writes and reads. Independent of the
/// release version.
pub const FORMAT_VERSION: u32 = 3;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Manifests larger than this are refused before parsing.
pub const MANIFEST_MAX: u64 = 256 << 20;
/// The ref an image directory keeps its one snapshot under.
pub const DIR_REF: &str = "image:latest";

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
    #[error("{snapshot}: run at +{vma_offset:#x}: read {got} bytes, the manifest says {len}")]
    ShortRun {
        snapshot: String,
        vma_offset: u64,
        got: u64,
        len: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
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

/// The envelope's bytes: what `manifest.json` and a store root hold.
pub fn envelope_bytes(manifest: &Manifest) -> Vec<u8> {
    let envelope = Envelope {
        magic: MAGIC.to_string(),
        format_version: FORMAT_VERSION,
        checksum: manifest_checksum(manifest),
        manifest: serde_json::to_value(manifest).expect("manifest serializes"),
    };
    serde_json::to_vec_pretty(&envelope).expect("envelope serializes")
}

/// Parses and checks an envelope; `path` names it in errors.
pub fn parse_envelope(text: &[u8], path: &Path) -> Result<Manifest, ImageError> {
    let bad = |reason: String| ImageError::BadManifest {
        path: path.to_path_buf(),
        reason,
    };
    if text.len() as u64 > MANIFEST_MAX {
        return Err(bad(format!(
            "{} bytes is over the {MANIFEST_MAX} byte cap",
            text.len()
        )));
    }
    let envelope: Envelope =
        serde_json::from_slice(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    if envelope.magic != MAGIC {
        return Err(bad(format!("magic is {:?}, not {MAGIC:?}", envelope.magic)));
    }
    if envelope.format_version != FORMAT_VERSION {
        return Err(ImageError::Version {
            path: path.to_path_buf(),
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
    Ok(manifest)
}

/// Where a checkpoint goes, or a restore comes from.
#[derive(Clone, Debug)]
pub enum ImageTarget {
    /// An image directory (`--image-path DIR`).
    Dir(PathBuf),
    /// A named snapshot in a store (`--to`/`--from NAME:TAG [--store DIR]`).
    Store { dir: PathBuf, name: RefName },
}

impl ImageTarget {
    /// For messages: the directory, or `NAME:TAG in STORE`.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            Self::Store { dir, name } => format!("{name} in {}", dir.display()),
        }
    }
}

/// Store options the engine uses (chunking, compression level).
pub type ImageOptions = StoreOptions;

/// Writes a new snapshot.
pub struct ImageWriter {
    target: ImageTarget,
    writer: SnapshotWriter,
}

impl ImageWriter {
    /// Starts a snapshot in an image directory (created if missing).
    pub fn create(dir: &Path) -> Result<Self, ImageError> {
        Self::open(
            &ImageTarget::Dir(dir.to_path_buf()),
            StoreOptions::default(),
        )
    }

    /// Starts a snapshot at `target`.
    pub fn open(target: &ImageTarget, opts: ImageOptions) -> Result<Self, ImageError> {
        let dir = match target {
            ImageTarget::Dir(d) | ImageTarget::Store { dir: d, .. } => d,
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let store = Arc::new(Store::open_with(dir, opts)?);
        Ok(Self {
            target: target.clone(),
            writer: SnapshotWriter::new(store)?,
        })
    }

    /// Stores bytes that are not part of a mapping (pipe buffers, ghost
    /// files); `vma_offset` is left 0.
    pub fn add(&mut self, data: &[u8]) -> Result<PageRun, ImageError> {
        self.add_at(0, data)
    }

    /// Stores the bytes at `vma_offset` in a VMA; chunk boundaries follow
    /// the VMA's offsets, so the same bytes at the same place dedup.
    pub fn add_at(&mut self, vma_offset: u64, data: &[u8]) -> Result<PageRun, ImageError> {
        let chunks = self.writer.add(vma_offset, data)?;
        Ok(PageRun {
            vma_offset,
            len: data.len() as u64,
            chunks,
        })
    }

    /// Bytes handed to the writer so far.
    pub fn written(&self) -> u64 {
        self.writer.stats().bytes
    }

    /// What was stored, deduplicated and left out as zero.
    pub fn stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// Shows progress on a terminal.
    pub fn set_progress(&mut self, label: &str) {
        self.writer
            .set_progress(snaprun_store::Progress::new(label, None));
    }

    /// Makes the snapshot durable: chunks, then the root, then the name
    /// (and for an image directory, `manifest.json`, then the collection of
    /// the replaced snapshot's chunks). Returns the root digest.
    pub fn finish(self, manifest: Manifest) -> Result<Digest, ImageError> {
        let bytes = envelope_bytes(&manifest);
        let store = self.writer.store().clone();
        match &self.target {
            ImageTarget::Store { name, .. } => Ok(self.writer.commit(&bytes, Some(name))?),
            ImageTarget::Dir(dir) => {
                let name: RefName = DIR_REF.parse().expect("a valid ref");
                let digest = self.writer.commit(&bytes, Some(&name))?;
                let tmp = dir.join(format!("{MANIFEST_FILE}.tmp-{}", std::process::id()));
                let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
                f.write_all(&bytes).map_err(io_err(&tmp))?;
                f.sync_all().map_err(io_err(&tmp))?;
                drop(f);
                let final_path = dir.join(MANIFEST_FILE);
                fs::rename(&tmp, &final_path).map_err(io_err(&final_path))?;
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(dir))?;
                // The new manifest is in place: the old snapshot's chunks
                // are garbage.
                if let Err(e) = snaprun_store::gc(&store) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not collect the replaced snapshot");
                }
                Ok(digest)
            }
        }
    }

    /// Drops a checkpoint that failed: nothing names what it stored, and
    /// the next GC removes it.
    pub fn abandon(self) {}
}

/// A snapshot opened for reading: the verified manifest, and the store
/// its chunks are read from.
pub struct Image {
    /// The image directory, or the store's directory.
    pub dir: PathBuf,
    /// The snapshot for messages: the directory or `NAME:TAG`.
    pub label: String,
    pub manifest: Manifest,
    /// The store root digest, for a named snapshot.
    pub root: Option<Digest>,
    store: Arc<Store>,
    /// Bytes read so far, shown on a terminal.
    progress: Mutex<Progress>,
}

/// Every byte of stored data a manifest's runs hold.
fn data_bytes(m: &Manifest) -> u64 {
    m.processes
        .iter()
        .flat_map(|p| {
            p.vmas
                .iter()
                .flat_map(|v| v.runs.iter())
                .chain(p.memfds.iter().flat_map(|m| m.runs.iter()))
                .chain(p.files.iter().filter_map(|f| match &f.kind {
                    FileKind::Pipe { data, .. }
                    | FileKind::Deleted { data, .. }
                    | FileKind::Fifo { data, .. } => data.as_ref(),
                    FileKind::UnixSocket(s) => s.data.as_ref(),
                    _ => None,
                }))
        })
        .map(|r| r.len)
        .sum()
}

fn restore_progress(label: &str, m: &Manifest) -> Mutex<Progress> {
    Mutex::new(Progress::new(&format!("read {label}"), Some(data_bytes(m))))
}

impl Image {
    /// Opens an image directory.
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
        if meta.len() > MANIFEST_MAX {
            return Err(ImageError::BadManifest {
                path,
                reason: format!("{} bytes is over the {MANIFEST_MAX} byte cap", meta.len()),
            });
        }
        let text = fs::read(&path).map_err(io_err(&path))?;
        let manifest = parse_envelope(&text, &path)?;
        let label = dir.display().to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            progress: restore_progress(&label, &manifest),
            label,
            manifest,
            root: None,
            store: Arc::new(Store::open(dir)?),
        })
    }

    /// Opens a named snapshot in a store (which may have remotes).
    pub fn open_named(store: Arc<Store>, name: &RefName) -> Result<Self, ImageError> {
        let (digest, root) = store.open_snapshot(name)?;
        let path = PathBuf::from(format!("{name} ({})", store.dir().display()));
        let manifest = parse_envelope(&root.manifest, &path)?;
        Ok(Self {
            dir: store.dir().to_path_buf(),
            progress: restore_progress(&name.to_string(), &manifest),
            label: name.to_string(),
            manifest,
            root: Some(digest),
            store,
        })
    }

    /// Opens what `target` names, with default store options.
    pub fn open_target(target: &ImageTarget) -> Result<Self, ImageError> {
        match target {
            ImageTarget::Dir(d) => Self::open(d),
            ImageTarget::Store { dir, name } => Self::open_named(Arc::new(Store::open(dir)?), name),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Reads a run's bytes into `buf` (replacing its content), every chunk
    /// verified against its digest.
    pub fn read_run(&self, run: &PageRun, buf: &mut Vec<u8>) -> Result<(), ImageError> {
        buf.clear();
        buf.reserve(run.len as usize);
        self.store.read_chunks(&run.chunks, buf, &self.label)?;
        if buf.len() as u64 != run.len {
            return Err(ImageError::ShortRun {
                snapshot: self.label.clone(),
                vma_offset: run.vma_offset,
                got: buf.len() as u64,
                len: run.len,
            });
        }
        self.progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(run.len);
        Ok(())
    }
}

/// The process tree: distinct pids, each process and zombie after its
/// parent, shared files pointing at an fd of an earlier process.
fn validate_tree(m: &Manifest) -> Result<(), String> {
    let mut seen: Vec<i32> = Vec::new();
    for (i, p) in m.processes.iter().enumerate() {
        if seen.contains(&p.pid) || m.zombies.iter().any(|z| z.pid == p.pid) {
            return Err(format!("pid {} appears twice", p.pid));
        }
        if i > 0 && !seen.contains(&p.ppid) {
            return Err(format!(
                "pid {}: its parent {} does not come before it",
                p.pid, p.ppid
            ));
        }
        for f in &p.files {
            if let Some(src) = f.shared {
                let holder = m.processes[..i].iter().find(|q| q.pid == src.pid);
                if !holder.is_some_and(|q| q.fds.iter().any(|d| d.fd == src.fd)) {
                    return Err(format!(
                        "pid {} file {}: shared with pid {} fd {}, which no earlier process has",
                        p.pid, f.id, src.pid, src.fd
                    ));
                }
            }
        }
        seen.push(p.pid);
    }
    for z in &m.zombies {
        if !seen.contains(&z.ppid) {
            return Err(format!(
                "zombie {}: its parent {} is not in the tree",
                z.pid, z.ppid
            ));
        }
    }
    Ok(())
}

/// Structural checks, so that nothing later trusts a bad offset.
fn validate(m: &Manifest) -> Result<(), String> {
    if m.processes.is_empty() {
        return Err("no processes".into());
    }
    let page = crate::sys::PAGE_SIZE;
    let check_run = |run: &PageRun, what: &str| -> Result<(), String> {
        let sum = run.chunks.iter().try_fold(0u64, |acc, c| {
            (c.len as usize <= MAX_CHUNK_SIZE && c.len > 0)
                .then(|| acc.checked_add(c.len))
                .flatten()
        });
        if sum != Some(run.len) {
            return Err(format!(
                "{what}: run at +{:#x} of {} bytes: its chunks do not add up to it",
                run.vma_offset, run.len
            ));
        }
        Ok(())
    };
    validate_tree(m)?;
    for p in &m.processes {
        if p.threads.first().map(|t| t.tid) != Some(p.pid) {
            return Err(format!(
                "pid {}: the first thread must be the leader (tid {})",
                p.pid, p.pid
            ));
        }
        let mut tids: Vec<i32> = p.threads.iter().map(|t| t.tid).collect();
        tids.sort_unstable();
        if tids.windows(2).any(|w| w[0] == w[1]) || tids.iter().any(|&t| t <= 0) {
            return Err(format!(
                "pid {}: bad or repeated thread ids {tids:?}",
                p.pid
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
                    return Err(format!(
                        "{what}: run at +{:#x} of {} bytes lies outside the vma",
                        r.vma_offset, r.len
                    ));
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
    for a in &m.attachments {
        if let Some(r) = &a.data {
            check_run(r, &format!("attachment {:?}", a.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
