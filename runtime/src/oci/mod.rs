//! snaprun as an OCI runtime (runtime-spec 1.x, runc's command line): one
//! module per verb (`create`, `start`, `kill`, `delete`, `exec`, `pause`,
//! `ps`, `features`, `checkpoint`, `restore`) and per concern of container
//! setup (`namespaces`, `rootfs`, `mounts`, `cgroups`, `caps`, `process`,
//! `console`, `hooks`, `tmpfs`).
//! See docs/oci.md.

pub mod caps;
pub mod cgroups;
pub mod checkpoint;
pub mod console;
pub mod create;
pub mod delete;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
mod init;
pub mod kill;
pub mod mounts;
pub mod namespaces;
pub mod pause;
pub mod proc;
pub mod process;
pub mod ps;
pub mod relay;
pub mod restore;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod start;
pub mod state;
mod sync;
pub mod tmpfs;
pub mod update;
pub mod validate;

pub use error::{Error, Result};
