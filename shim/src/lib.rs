//! `containerd-shim-snaprun-v1`: the containerd shim (task API v2, which
//! containerd 1.6 and 1.7 speak) that runs containers with snaprun, one
//! shim per container, and starts a container from a snapshot when its
//! annotations name one (docs/shim.md).
//!
//! The shim drives the `snaprun` binary with runc's command line, as
//! containerd's runc shim drives runc, so that the shim and the runtime
//! crates stay independent.

pub mod checkpoint;
pub mod console;
pub mod error;
pub mod events;
pub mod io;
pub mod options;
pub mod reaper;
pub mod restore;
pub mod runtime;
pub mod service;
pub mod state;
pub mod task;

pub use error::{Error, Result};
pub use service::{Service, RUNTIME_ID};
