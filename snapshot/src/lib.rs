//! snaprun's process checkpoint/restore engine and its snapshot image
//! format.
//!
//! - [`dump`] freezes a process with ptrace, reads its state from outside
//!   (registers, `/proc`, injected syscalls for what only the process itself
//!   can read) and writes an [`image`].
//! - [`restore`] creates a stopped stub process and morphs it, through
//!   injected syscalls, into the checkpointed one.
//! - [`pager`] serves a lazily restored process's memory through
//!   userfaultfd (`snaprun restore --lazy`).
//! - [`sys`] is the seam around the kernel.
//!
//! See docs/snapshot-format.md and docs/engine.md in the repository.

pub mod dump;
mod hex;
pub mod image;
pub mod pager;
pub mod restore;
pub mod sys;
pub mod timings;

pub use dump::{checkpoint, CheckpointOptions, DumpError};
pub use image::{Image, ImageError};
pub use restore::{restore, RestoreError, RestoreOptions};
pub use timings::Timings;

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
}
