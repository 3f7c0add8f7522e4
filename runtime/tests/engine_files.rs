//! File descriptors across checkpoint/restore (`tests/programs/fd_*.c`,
//! `pipe_buffered.c`).

mod common;

use common::roundtrip;

/// Regular files: fd numbers, offsets, O_APPEND and access modes.
#[test]
fn regular_files() {
    roundtrip("fd_regular");
}

/// An open file that was deleted keeps its content.
#[test]
fn deleted_open_file() {
    roundtrip("fd_deleted");
}

/// A directory fd: same inode, openat and fchdir work.
#[test]
fn directory_fd() {
    roundtrip("fd_dir");
}

/// dup'd fds share one offset; FD_CLOEXEC is per fd.
#[test]
fn dup_fds_share_offset() {
    roundtrip("fd_dup");
}

/// /dev/null, /dev/zero, /dev/urandom and the standard fds.
#[test]
fn device_and_standard_fds() {
    roundtrip("fd_devices");
}

/// Pipes holding unread data (10 KiB; 100 KiB in a 256 KiB pipe).
#[test]
fn pipes_with_buffered_data() {
    roundtrip("pipe_buffered");
}

/// eventfds: counter (also above 32 bits), semaphore mode, flags.
#[test]
fn eventfd_counters() {
    roundtrip("fd_eventfd");
}

/// A POSIX shm object in /dev/shm, open and mapped: reopened and remapped by
/// path, one object again (its content lives in tmpfs, not the snapshot).
#[test]
fn posix_shm_file_open_and_mapped() {
    roundtrip("fd_shm");
}
