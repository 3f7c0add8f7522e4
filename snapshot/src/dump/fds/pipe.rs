//! Pipes and named FIFOs: bytes still buffered are copied with `tee`, so
//! the source keeps them. A pipe must have both ends in the process tree; a
//! FIFO holding data must be open in no other process.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::image::{FileKind, ImageWriter};

use super::super::DumpError;
use super::fionread;

/// Both ends of every pipe must be in the tree, one description each
/// (descriptions shared by several processes count once).
pub(super) fn check_pipes(procs: &[super::ProcFiles]) -> Result<(), DumpError> {
    // inode -> (read ends, write ends, first (pid, fd) seen)
    let mut ends: HashMap<u64, (u32, u32, (i32, i32))> = HashMap::new();
    for p in procs {
        for f in p.files.iter().filter(|f| f.shared.is_none()) {
            if let FileKind::Pipe {
                inode, write_end, ..
            } = f.kind
            {
                let fd = p
                    .fds
                    .iter()
                    .find(|d| d.file == f.id)
                    .map(|d| d.fd)
                    .unwrap_or(-1);
                let e = ends.entry(inode).or_insert((0, 0, (p.pid, fd)));
                if write_end {
                    e.1 += 1
                } else {
                    e.0 += 1
                }
            }
        }
    }
    let mut ends: Vec<_> = ends.into_iter().collect();
    ends.sort_unstable_by_key(|(inode, _)| *inode);
    for (inode, (r, w, (pid, fd))) in ends {
        if (r, w) != (1, 1) {
            let what = if r == 0 || w == 0 {
                format!("pipe:[{inode}] with its other end outside the process tree")
            } else {
                format!("pipe:[{inode}] opened more than once at one end")
            };
            return Err(DumpError::Unsupported { pid, fd, what });
        }
    }
    Ok(())
}

pub(super) fn dump_pipe(
    pid: i32,
    fd: i32,
    inode: u64,
    info: &crate::sys::proc::FdInfo,
    dup: OwnedFd,
    writer: &mut ImageWriter,
) -> Result<FileKind, DumpError> {
    let err = |reason: String| DumpError::Fd { pid, fd, reason };
    let write_end = info.flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32;
    // SAFETY: fcntl on an fd we own; no memory involved.
    let capacity = unsafe { libc::fcntl(dup.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if capacity < 0 {
        return Err(err(format!(
            "F_GETPIPE_SZ: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut data = None;
    if !write_end {
        let queued = fionread(&dup).map_err(|e| err(format!("FIONREAD: {e}")))? as usize;
        if queued > 0 {
            let bytes = peek_pipe(&dup, queued, capacity)
                .map_err(|e| err(format!("reading buffered pipe data: {e}")))?;
            data = Some(writer.add(&bytes)?);
        }
    }
    Ok(FileKind::Pipe {
        inode,
        write_end,
        capacity: capacity as u32,
        data,
    })
}

/// A named FIFO at `path` (`pid`'s `fd`, reachable as `link_path`): its
/// capacity, and on the FIFO's `first` description the bytes buffered in it.
pub(super) fn dump_fifo(
    pid: i32,
    fd: i32,
    path: &str,
    link_path: &str,
    first: bool,
    writer: &mut ImageWriter,
) -> Result<FileKind, DumpError> {
    let err = |reason: String| DumpError::Fd {
        pid,
        fd,
        reason: format!("fifo {path}: {reason}"),
    };
    // A reader of our own on the same FIFO (the target's end may be the
    // write end, which tee cannot read). Non-blocking: no writer is needed.
    let reader: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(link_path)
        .map_err(|e| err(format!("opening {link_path}: {e}")))?
        .into();
    // SAFETY: fcntl on an fd we own; no memory involved.
    let capacity = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if capacity < 0 {
        return Err(err(format!(
            "F_GETPIPE_SZ: {}",
            std::io::Error::last_os_error()
        )));
    }
    let mut data = None;
    let queued = fionread(&reader).map_err(|e| err(format!("FIONREAD: {e}")))? as usize;
    if first && queued > 0 {
        if let Some(other) = other_holder(pid, path, link_path) {
            return Err(DumpError::Unsupported {
                pid,
                fd,
                what: format!(
                    "fifo {path} with {queued} unread bytes that pid {other} also has open"
                ),
            });
        }
        let bytes = peek_pipe(&reader, queued, capacity)
            .map_err(|e| err(format!("reading buffered data: {e}")))?;
        data = Some(writer.add(&bytes)?);
    }
    Ok(FileKind::Fifo {
        path: path.to_string(),
        capacity: Some(capacity as u32),
        data,
    })
}

/// A process other than `pid` (and snaprun) that has the FIFO open, if
/// any: its bytes would then be both in the snapshot and still in the
/// kernel.
fn other_holder(pid: i32, path: &str, link_path: &str) -> Option<i32> {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id() as i32;
    let want = std::fs::metadata(link_path).ok()?;
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(other) = proc_entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if other == pid || other == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for e in fds.flatten() {
            let is_it = std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == path)
                && std::fs::metadata(e.path())
                    .is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino());
            if is_it {
                return Some(other);
            }
        }
    }
    None
}

/// Copies the bytes queued in a pipe without consuming them: `tee` into a
/// pipe of our own, then read that.
fn peek_pipe(src: &OwnedFd, queued: usize, capacity: i32) -> std::io::Result<Vec<u8>> {
    let mut ends = [0i32; 2];
    // SAFETY: pipe2 writes two fds into the live array.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors returned by the kernel.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, capacity) };
    // SAFETY: tee between two pipe fds we hold; no memory involved.
    let n = unsafe {
        libc::tee(
            src.as_raw_fd(),
            w.as_raw_fd(),
            queued,
            libc::SPLICE_F_NONBLOCK as libc::c_uint,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != queued {
        return Err(std::io::Error::other(format!(
            "tee copied {n} of {queued} bytes"
        )));
    }
    let mut out = vec![0u8; queued];
    let mut done = 0;
    while done < queued {
        // SAFETY: reads into the unfilled tail of a live buffer.
        let r = unsafe {
            libc::read(
                r.as_raw_fd(),
                out[done..].as_mut_ptr().cast(),
                queued - done,
            )
        };
        if r <= 0 {
            return Err(std::io::Error::last_os_error());
        }
        done += r as usize;
    }
    Ok(out)
}
