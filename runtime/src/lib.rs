//! The snaprun runtime library: the OCI runtime the `snaprun` binary drives.

pub mod oci;
