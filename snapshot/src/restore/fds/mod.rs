//! Recreating the fd table inside the target: each open file description
//! once (opened, or created, by injected syscalls, so paths resolve in the
//! target's mount namespace), then placed at its fd numbers with `dup3`.

use std::collections::{BTreeSet, HashMap};

use crate::image::{FileKind, Image, OpenFile, ProcessImage};
use crate::sys::remote::{self, Remote, Scratch};

use super::RestoreError;

mod anon;
mod epoll;
mod file;
mod inotify;
mod memfd;
mod pipe;
mod socket;
mod timerfd;

pub use file::ghost_path;
pub use memfd::{create_memfds, Memfds};
pub use socket::sockaddr;

/// `f_flags` that can be given back to `open`; the others (O_CREAT,
/// O_TRUNC, O_EXCL, O_NOCTTY) only mattered when the file was first
/// opened, and O_CLOEXEC is per fd.
const REOPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_SYNC
    | libc::O_DIRECT
    | libc::O_NOATIME
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_PATH
    | libc::O_LARGEFILE;

pub(super) fn fd_err(pid: i32, fd: i32, reason: String) -> RestoreError {
    RestoreError::Fd { pid, fd, reason }
}

/// Closes every fd the stub inherited.
pub fn close_all(remote: &mut dyn Remote) -> Result<(), RestoreError> {
    remote.syscall(
        "close_range",
        libc::SYS_close_range,
        &[0, u32::MAX as u64, 0],
    )?;
    Ok(())
}

pub fn restore_fds(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    p: &ProcessImage,
    memfds: &Memfds,
) -> Result<(), RestoreError> {
    let targets: BTreeSet<i32> = p.fds.iter().map(|f| f.fd).collect();
    let high = targets.iter().next_back().map(|m| m + 1).unwrap_or(0);
    let mut by_file: HashMap<u32, Vec<&crate::image::Fd>> = HashMap::new();
    for fd in &p.fds {
        by_file.entry(fd.file).or_default().push(fd);
    }
    // Pipes are created both ends at once: the end not yet placed waits
    // here, keyed by the pipe's inode and which end it is.
    let mut pipe_ends: HashMap<(u64, bool), u64> = HashMap::new();
    for file in &p.files {
        let Some(fds) = by_file.get(&file.id) else {
            continue;
        };
        let first = fds[0].fd;
        let tmp = match &file.kind {
            FileKind::Pipe {
                inode, write_end, ..
            } => match pipe_ends.remove(&(*inode, *write_end)) {
                Some(fd) => fd,
                None => {
                    let (r, w) = pipe::create_pipe(remote, scratch, image, p, *inode, first, high)?;
                    let (mine, other) = if *write_end { (w, r) } else { (r, w) };
                    pipe_ends.insert((*inode, !*write_end), other);
                    mine
                }
            },
            _ => open_file(remote, scratch, image, memfds, file, first)?,
        };
        // Keep the new description away from fd numbers still to be placed.
        let tmp = if tmp as i32 != first && targets.contains(&(tmp as i32)) {
            let moved = remote.syscall(
                "fcntl(F_DUPFD)",
                libc::SYS_fcntl,
                &[tmp, libc::F_DUPFD as u64, high as u64],
            )?;
            remote.syscall("close", libc::SYS_close, &[tmp])?;
            moved
        } else {
            tmp
        };
        for fd in fds {
            let flags = if fd.cloexec { libc::O_CLOEXEC } else { 0 };
            if tmp as i32 == fd.fd {
                remote.syscall(
                    &format!("fcntl(F_SETFD) fd {}", fd.fd),
                    libc::SYS_fcntl,
                    &[
                        tmp,
                        libc::F_SETFD as u64,
                        if fd.cloexec {
                            libc::FD_CLOEXEC as u64
                        } else {
                            0
                        },
                    ],
                )?;
            } else {
                remote.syscall(
                    &format!("dup3 to fd {}", fd.fd),
                    libc::SYS_dup3,
                    &[tmp, fd.fd as u64, flags as u64],
                )?;
            }
        }
        if !fds.iter().any(|f| f.fd == tmp as i32) {
            remote.syscall("close", libc::SYS_close, &[tmp])?;
        }
    }
    // Pipe ends that no fd refers to (cannot happen for a valid image, as
    // checkpoint requires both ends) are closed.
    for (_, fd) in pipe_ends {
        remote.syscall("close", libc::SYS_close, &[fd])?;
    }
    // Second pass: epoll registrations need every fd they name.
    epoll::register_all(remote, scratch, p)?;
    Ok(())
}

fn open_file(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    memfds: &Memfds,
    file: &OpenFile,
    fd: i32,
) -> Result<u64, RestoreError> {
    let flags = file.flags as i32 & REOPEN_FLAGS;
    let open = |remote: &mut dyn Remote, scratch: &mut Scratch, path: &str, flags: i32| {
        remote::open(
            remote,
            scratch,
            &format!("fd {fd}: open {path}"),
            path,
            flags,
        )
    };
    match &file.kind {
        FileKind::Regular { file: f, pos } => {
            let new = open(remote, scratch, &f.path, flags)?;
            if flags & libc::O_PATH == 0 {
                seek_to(remote, &format!("fd {fd}"), fd, new, *pos)?;
            }
            Ok(new)
        }
        FileKind::Directory { path, pos } => {
            let new = open(remote, scratch, path, flags | libc::O_DIRECTORY)?;
            if *pos != 0 && flags & libc::O_PATH == 0 {
                seek_to(remote, &format!("fd {fd}"), fd, new, *pos)?;
            }
            Ok(new)
        }
        FileKind::CharDevice { path, .. } => Ok(open(remote, scratch, path, flags)?),
        FileKind::Memfd { inode, pos } => {
            // A new open of the memfd: its own offset and flags, one content.
            let obj = memfds.get(*inode).ok_or_else(|| {
                fd_err(
                    remote.pid(),
                    fd,
                    format!("memfd inode {inode} is not in the snapshot"),
                )
            })?;
            let new = open(remote, scratch, &format!("/proc/self/fd/{obj}"), flags)?;
            seek_to(remote, &format!("fd {fd}"), fd, new, *pos)?;
            Ok(new)
        }
        FileKind::Fifo {
            path,
            capacity,
            data,
        } => {
            let mut bytes = Vec::new();
            if let Some(run) = data {
                image.read_run(run, &mut bytes)?;
            }
            pipe::open_fifo(remote, scratch, fd, flags, path, *capacity, &bytes)
        }
        FileKind::TcpListen {
            family,
            address,
            port,
            options,
        } => socket::listen_socket(
            remote,
            scratch,
            fd,
            file.flags as i32,
            *family,
            address,
            *port,
            options,
        ),
        FileKind::Deleted {
            path,
            mode,
            pos,
            data,
            ..
        } => {
            let mut content = Vec::new();
            if let Some(run) = data {
                image.read_run(run, &mut content)?;
            }
            file::restore_deleted(remote, scratch, fd, flags, path, *mode, *pos, &content)
        }
        FileKind::EventFd { .. }
        | FileKind::TimerFd { .. }
        | FileKind::SignalFd { .. }
        | FileKind::Epoll { .. }
        | FileKind::Inotify { .. } => anon::create(remote, scratch, fd, file),
        FileKind::Pipe { .. } => unreachable!("pipes are created by create_pipe"),
    }
}

/// Moves the target's `new` (restoring fd `fd`, described by `what`) to
/// offset `pos`.
pub(super) fn seek_to(
    remote: &mut dyn Remote,
    what: &str,
    fd: i32,
    new: u64,
    pos: u64,
) -> Result<(), RestoreError> {
    let at = remote.syscall(
        &format!("{what}: lseek"),
        libc::SYS_lseek,
        &[new, pos, libc::SEEK_SET as u64],
    )?;
    if at != pos {
        return Err(fd_err(
            remote.pid(),
            fd,
            format!("lseek to {pos} landed at {at}"),
        ));
    }
    Ok(())
}
