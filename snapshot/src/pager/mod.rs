//! Lazy restore: a userfaultfd pager that serves a restored process's
//! memory from the snapshot store while the process runs.
//!
//! - The restore side ([`client`]) creates a uffd inside each process by
//!   injection, registers its lazily served mappings (MISSING mode, kernel
//!   faults included), takes the uffd with `pidfd_getfd` and hands it to the
//!   pager over a control channel ([`protocol`]).
//! - The pager ([`serve`], run as `snaprun pager`, one detached process per
//!   restore) answers faults with `UFFDIO_COPY`/`UFFDIO_ZEROPAGE`, pushes the
//!   recorded working set ([`workingset`]) before the process resumes,
//!   streams the rest after, follows the process's fork/mremap/madvise/munmap
//!   ([`map`]), and exits when every page is in. If a chunk cannot be had it
//!   kills the process and logs why.
//!
//! [`uffd`] holds the kernel's structs and ioctls, [`fill`] the seam the
//! logic is tested through. The protocol and its invariants are in
//! docs/pager.md.

pub mod client;
pub mod fill;
pub mod map;
pub mod protocol;
pub mod serve;
pub mod stats;
pub mod uffd;
mod worker;
pub mod workingset;

use std::io;
use std::path::PathBuf;

pub use client::{eager_vmas, is_lazy, LazyOptions, PagerClient, PagerInfo, StartingPager};
pub use protocol::Source;
use snaprun_store::{Digest, RefName, StoreError};
pub use stats::Stats;

use crate::image::{Image, ImageError, DIR_REF};
use crate::sys::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum PagerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("pid {pid}: userfaultfd: {what}: {source}")]
    Uffd {
        pid: i32,
        what: String,
        source: io::Error,
    },
    #[error("pager control channel: {what}: {source}")]
    Control { what: String, source: io::Error },
    #[error("starting the pager {exe}: {source}")]
    Spawn { exe: PathBuf, source: io::Error },
    #[error("the pager failed: {reason} (pager log: {log})")]
    Failed { reason: String, log: String },
    #[error("working set {key}: {reason}")]
    WorkingSet { key: String, reason: String },
    #[error("snapshot {label}: {reason}")]
    Snapshot { label: String, reason: String },
}

/// The root digest of an opened snapshot (an image directory's comes from
/// its ref), which names its working set and which the pager checks it
/// opened the same snapshot by.
pub fn image_root(image: &Image) -> Result<Digest, PagerError> {
    if let Some(r) = image.root {
        return Ok(r);
    }
    let name: RefName = DIR_REF.parse().expect("a valid ref");
    Ok(image.store().resolve(&name)?)
}
