//! `containerd-shim-snaprun-v1`: the containerd shim (task API v2) for
//! snaprun. Not implemented yet; the shim issue builds it on the OCI runtime.
