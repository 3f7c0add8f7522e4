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
mod inherited;
mod inotify;
mod memfd;
mod pipe;
mod socket;
mod timerfd;
mod unix;
mod unix_name;

pub use file::ghost_path;
pub use inherited::{close_all_but, Inherited};
pub use memfd::{create_memfds, Memfds};
pub use socket::sockaddr;
pub use unix_name::unix_sockaddr;

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

/// An error whose reason already names the fd.
pub(super) fn state_err(pid: i32, reason: String) -> RestoreError {
    RestoreError::State { pid, reason }
}

/// Open file descriptions that cross processes of the tree.
#[derive(Default)]
pub struct TreeFiles {
    /// Pipe ends made by one process for another: (inode, write end) ->
    /// (the maker's image pid, the fd it holds the end at).
    parked: HashMap<(u64, bool), (i32, u64)>,
    /// Unix sockets made by one process with their peer, for another:
    /// inode -> (the maker's image pid, the fd it holds it at).
    parked_unix: HashMap<u64, (i32, u64)>,
    /// Every parked end, to close in its maker once all are taken.
    to_close: Vec<(i32, u64)>,
}

/// Closes, in the processes that made them, the pipe ends parked for other
/// processes (which hold their own copies by now).
pub fn close_parked(
    procs: &mut [super::tree::Proc],
    files: &mut TreeFiles,
) -> Result<(), RestoreError> {
    for (holder, fd) in files.to_close.drain(..) {
        if let Some(p) = procs.iter_mut().find(|p| p.image.pid == holder) {
            p.inj
                .syscall("close (parked pipe end)", libc::SYS_close, &[fd])?;
        }
    }
    files.parked.clear();
    files.parked_unix.clear();
    Ok(())
}

/// A duplicate, in the target, of fd `fd` of the process whose pid (in the
/// target's PID namespace) is `inner_pid`: `pidfd_open` + `pidfd_getfd`
/// run by the target.
fn pull(remote: &mut dyn Remote, what: &str, inner_pid: i32, fd: u64) -> Result<u64, RestoreError> {
    let pidfd = remote.syscall(
        &format!("{what}: pidfd_open({inner_pid})"),
        libc::SYS_pidfd_open,
        &[inner_pid as u64, 0],
    )?;
    let r = remote.syscall(
        &format!("{what}: pidfd_getfd(pid {inner_pid}, fd {fd})"),
        libc::SYS_pidfd_getfd,
        &[pidfd, fd, 0],
    );
    remote.syscall("close (pidfd)", libc::SYS_close, &[pidfd])?;
    Ok(r?)
}

/// Places every fd of `p`. `earlier` lists the processes of the tree
/// restored before it, as (image pid, pid in the target's namespace):
/// descriptions shared with them are duplicated from them. `inherited`
/// holds what the restorer hands over for inherited descriptions.
#[allow(clippy::too_many_arguments)]
pub fn restore_fds(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    p: &ProcessImage,
    memfds: &Memfds,
    tree: &mut TreeFiles,
    earlier: &[(i32, i32)],
    inherited: &Inherited,
) -> Result<(), RestoreError> {
    let me = remote.pid();
    let inner_of = |image_pid: i32| -> Result<i32, RestoreError> {
        earlier
            .iter()
            .find(|(p, _)| *p == image_pid)
            .map(|(_, inner)| *inner)
            .ok_or_else(|| RestoreError::State {
                pid: me,
                reason: format!("a shared file refers to pid {image_pid}, not restored before"),
            })
    };
    let targets: BTreeSet<i32> = p.fds.iter().map(|f| f.fd).collect();
    let high = targets.iter().next_back().map(|m| m + 1).unwrap_or(0);
    let mut by_file: HashMap<u32, Vec<&crate::image::Fd>> = HashMap::new();
    for fd in &p.fds {
        by_file.entry(fd.file).or_default().push(fd);
    }
    // Pipes are created both ends at once: the end not yet placed waits
    // here, keyed by the pipe's inode and which end it is.
    let mut pipe_ends: HashMap<(u64, bool), u64> = HashMap::new();
    // Unix sockets are made in connected pairs, likewise.
    let mut unix_socks = unix::UnixSockets::new(image, p, high);
    for file in &p.files {
        let Some(fds) = by_file.get(&file.id) else {
            continue;
        };
        let first = fds[0].fd;
        let tmp = match (&file.kind, file.shared) {
            (_, Some(src)) => pull(
                remote,
                &format!("fd {first}: shared with pid {} fd {}", src.pid, src.fd),
                inner_of(src.pid)?,
                src.fd as u64,
            )?,
            (
                FileKind::Pipe {
                    inode, write_end, ..
                },
                None,
            ) => match pipe_ends.remove(&(*inode, *write_end)) {
                Some(fd) => fd,
                None => match tree.parked.remove(&(*inode, *write_end)) {
                    Some((holder, fd)) => pull(
                        remote,
                        &format!("fd {first}: pipe:[{inode}] made by pid {holder}"),
                        inner_of(holder)?,
                        fd,
                    )?,
                    None => {
                        let (r, w) =
                            pipe::create_pipe(remote, scratch, image, *inode, first, high)?;
                        let (mine, other) = if *write_end { (w, r) } else { (r, w) };
                        let other_here = p.files.iter().any(|f| {
                            f.shared.is_none()
                                && matches!(f.kind, FileKind::Pipe { inode: i, write_end: we, .. }
                                    if i == *inode && we != *write_end)
                        });
                        if other_here {
                            pipe_ends.insert((*inode, !*write_end), other);
                        } else {
                            // Another process of the tree holds the other
                            // end: it takes it from here.
                            tree.parked.insert((*inode, !*write_end), (p.pid, other));
                            tree.to_close.push((p.pid, other));
                        }
                        mine
                    }
                },
            },
            (FileKind::Inherited { fd }, None) => inherited.dup(remote, *fd)?,
            (FileKind::UnixSocket(s), None) => match tree.parked_unix.remove(&s.inode) {
                // Made by an earlier process of the tree with its peer.
                Some((holder, fd)) => pull(
                    remote,
                    &format!("fd {first}: unix socket:[{}] made by pid {holder}", s.inode),
                    inner_of(holder)?,
                    fd,
                )?,
                None => unix_socks.open(remote, scratch, image, s.inode)?,
            },
            (_, None) => open_file(remote, scratch, image, memfds, file, first)?,
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
        if let FileKind::UnixSocket(s) = &file.kind {
            unix_socks.placed(s.inode, first);
        }
    }
    unix_socks.close_pending(remote)?;
    for (inode, fd) in unix_socks.take_made_for_later() {
        tree.parked_unix.insert(inode, (p.pid, fd));
        tree.to_close.push((p.pid, fd));
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
        FileKind::InetSocket(s) => socket::inet_socket(remote, scratch, fd, file.flags as i32, s),
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
        FileKind::UnixSocket(_) => unreachable!("unix sockets are created by UnixSockets"),
        FileKind::Inherited { .. } => unreachable!("inherited fds are handed over by restore_fds"),
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
