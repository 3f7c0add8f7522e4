//! The CUDA driver's process checkpoint API (`cuCheckpointProcess*`), loaded
//! from libcuda at run time so that snaprun builds and runs without a GPU.
//!
//! Not implemented yet: the GPU issue fills this crate in. Until then the
//! engine treats every process as a CPU-only process and refuses, at
//! checkpoint, a process that has `/dev/nvidia*` open (see
//! `snaprun_snapshot::dump::fds`).
