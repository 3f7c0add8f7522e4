//! The CUDA driver's process checkpoint API (`cuCheckpointProcess*`),
//! loaded from libcuda at run time so that snaprun builds and runs on
//! machines without a GPU, where it reports [`Error::NotAvailable`] with the
//! reason.
//!
//! - [`LibCuda`] loads `libcuda.so.1` and resolves `cuInit`,
//!   `cuDriverGetVersion` and the six checkpoint functions (lock,
//!   checkpoint, restore with a GPU map, unlock, get-state,
//!   get-restore-thread-id).
//! - [`Driver`] is the seam: the raw calls, returning the driver's
//!   `CUresult`. [`LibCuda`] implements it; the unit tests use a fake.
//! - [`Client`] sits on a [`Driver`]: it tracks each process's state
//!   ([`ProcessState`]), refuses a call that is illegal in that state before
//!   the driver sees it, names every error, and offers [`Client::suspend`]
//!   (lock + checkpoint) and [`Client::resume`] (restore + unlock), which
//!   never leave a process locked when a later step fails.
//! - [`gpus`] reads, from `/proc`, which GPUs a process holds and whether it
//!   maps libcuda.
//!
//! See docs/gpu.md in the repository.

mod client;
mod driver;
pub mod ffi;
pub mod gpus;
mod libcuda;
mod state;
mod uuid;

#[cfg(test)]
mod client_tests;
#[cfg(test)]
mod fake;

pub use client::{Client, DEFAULT_LOCK_TIMEOUT};
pub use driver::{check_version, CuError, Driver, MIN_DRIVER_API};
pub use libcuda::{LibCuda, LIBCUDA_ENV, LIBCUDA_NAME};
pub use state::{Op, ProcessState};
pub use uuid::{complete_map, GpuPair, GpuUuid, ParseError};

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable driver: libcuda cannot be loaded, is too old, lacks a
    /// checkpoint symbol, or `cuInit` fails.
    #[error("the CUDA driver is not available: {reason}")]
    NotAvailable { reason: String },
    /// A driver call returned an error.
    #[error("{}{call} failed: {name} ({code})", pid_prefix(*.pid))]
    Driver {
        pid: Option<i32>,
        call: &'static str,
        code: u32,
        name: String,
    },
    /// The lock did not succeed within its timeout (the process kept
    /// running CUDA work, or another caller holds the lock).
    #[error("pid {pid}: {call} timed out after {timeout_ms} ms")]
    Timeout {
        pid: i32,
        call: &'static str,
        timeout_ms: u32,
    },
    /// The call is illegal in the process's state; the driver was not
    /// called.
    #[error("pid {pid}: {call} needs a {want} CUDA process, but its state is {state}")]
    BadState {
        pid: i32,
        call: &'static str,
        state: ProcessState,
        want: ProcessState,
    },
    /// A step after the lock failed, and so did the unlock meant to undo
    /// the lock: the process's CUDA calls stay blocked.
    #[error(
        "pid {pid}: {cause}; unlocking it again failed too ({unlock}): its CUDA calls stay blocked"
    )]
    StuckLocked {
        pid: i32,
        cause: Box<Error>,
        unlock: Box<Error>,
    },
    #[error(transparent)]
    Parse(#[from] ParseError),
}

fn pid_prefix(pid: Option<i32>) -> String {
    pid.map(|p| format!("pid {p}: ")).unwrap_or_default()
}
