//! Pipes: created both ends at once, with their capacity, flags and the
//! bytes that were buffered. Named FIFOs: opened by path, with their
//! capacity and buffered bytes.

use crate::image::{FileKind, Image};
use crate::sys::remote::{self, Remote, Scratch};

use super::super::RestoreError;

/// Creates a pipe with its capacity, flags and buffered bytes; returns
/// (read end, write end) as fds of the target.
pub(super) fn create_pipe(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    inode: u64,
    fd: i32,
    high: i32,
) -> Result<(u64, u64), RestoreError> {
    let what = format!("fd {fd}: pipe:[{inode}]");
    let ends = scratch.alloc(8);
    remote.syscall(&format!("{what}: pipe2"), libc::SYS_pipe2, &[ends, 0])?;
    let mut raw = [0u8; 8];
    remote.read_mem(ends, &mut raw)?;
    let r = i32::from_ne_bytes(raw[0..4].try_into().expect("4 bytes")) as u64;
    let w = i32::from_ne_bytes(raw[4..8].try_into().expect("4 bytes")) as u64;
    scratch.reset();
    // Both ends above every fd number to be placed, so that placing one end
    // cannot close the other.
    let mut lift = |end: u64| -> Result<u64, RestoreError> {
        if end as i32 >= high {
            return Ok(end);
        }
        let moved = remote.syscall(
            &format!("{what}: F_DUPFD"),
            libc::SYS_fcntl,
            &[end, libc::F_DUPFD as u64, high as u64],
        )?;
        remote.syscall("close", libc::SYS_close, &[end])?;
        Ok(moved)
    };
    let r = lift(r)?;
    let w = lift(w)?;
    let mut data = None;
    // The ends may be in different processes of the tree.
    let ends = || {
        image
            .manifest
            .processes
            .iter()
            .flat_map(|q| q.files.iter())
            .filter(|f| f.shared.is_none())
    };
    for f in ends() {
        if let FileKind::Pipe {
            inode: i,
            write_end,
            capacity,
            data: d,
        } = &f.kind
        {
            if *i != inode {
                continue;
            }
            let end = if *write_end { w } else { r };
            if *write_end || data.is_none() {
                remote.syscall(
                    &format!("{what}: F_SETPIPE_SZ {capacity}"),
                    libc::SYS_fcntl,
                    &[end, libc::F_SETPIPE_SZ as u64, *capacity as u64],
                )?;
            }
            if let Some(run) = d {
                data = Some(run.clone());
            }
        }
    }
    if let Some(run) = data {
        let mut bytes = Vec::new();
        image.read_run(&run, &mut bytes)?;
        remote::write_all(
            remote,
            scratch,
            &format!("{what}: write buffered data"),
            w,
            &bytes,
        )?;
    }
    // The ends' own flags (O_NONBLOCK) are set now that the data is in.
    for f in ends() {
        if let FileKind::Pipe {
            inode: i,
            write_end,
            ..
        } = &f.kind
        {
            if *i == inode {
                let end = if *write_end { w } else { r };
                let flags = f.flags as i32 & (libc::O_NONBLOCK | libc::O_DIRECT);
                remote.syscall(
                    &format!("{what}: F_SETFL"),
                    libc::SYS_fcntl,
                    &[end, libc::F_SETFL as u64, flags as u64],
                )?;
            }
        }
    }
    Ok((r, w))
}

/// Opens the FIFO at `path` with `flags` (restoring fd `fd`), sets its
/// capacity and puts `data` back in it, through a read-write open of our
/// own (which never blocks and needs no peer), closed after.
pub(super) fn open_fifo(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    path: &str,
    capacity: Option<u32>,
    data: &[u8],
) -> Result<u64, RestoreError> {
    let what = format!("fd {fd}: fifo {path}");
    // Opening a FIFO blocks until the other end is opened, unless
    // non-blocking; the real flags are set after.
    let new = remote::open(
        remote,
        scratch,
        &format!("{what}: open"),
        path,
        flags | libc::O_NONBLOCK,
    )?;
    remote.syscall(
        &format!("{what}: fcntl(F_SETFL)"),
        libc::SYS_fcntl,
        &[new, libc::F_SETFL as u64, flags as u64],
    )?;
    if let Some(capacity) = capacity {
        remote.syscall(
            &format!("{what}: F_SETPIPE_SZ {capacity}"),
            libc::SYS_fcntl,
            &[new, libc::F_SETPIPE_SZ as u64, capacity as u64],
        )?;
    }
    if !data.is_empty() {
        let filler = remote::open(
            remote,
            scratch,
            &format!("{what}: open to fill"),
            path,
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )?;
        let r = remote::write_all(
            remote,
            scratch,
            &format!("{what}: write buffered data"),
            filler,
            data,
        );
        remote.syscall("close", libc::SYS_close, &[filler])?;
        r?;
    }
    Ok(new)
}
