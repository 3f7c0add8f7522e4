//! Open files: what each fd refers to, which fds share an open file
//! description, and the state that goes with each kind.
//!
//! Sockets and pipes are looked at through a duplicate of the target's fd
//! taken with `pidfd_getfd`: the dumper then holds the same open file
//! description and can ask the kernel about it.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::image::{Fd, FileKind, ImageWriter, OpenFile, SharedFile};
use crate::sys::proc::parse_fdinfo;

use super::memory::file_ref;
use super::DumpError;

mod anon;
mod epoll;
mod file;
mod inet;
mod inotify;
mod memfd;
mod pipe;
mod socket;
mod timerfd;
mod unix;

pub use file::MAX_DELETED_FILE;
pub use memfd::{dump_memfds, MAX_MEMFD_DATA};
pub use socket::local_address;

/// Character devices that are the same everywhere: mem class (1:x) null,
/// zero, full, random, urandom.
const PORTABLE_CHAR_DEVICES: &[(u32, u32)] = &[(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)];

pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> Result<Self, DumpError> {
        // SAFETY: pidfd_open takes integers and returns a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(DumpError::Ptrace {
                pid,
                what: "pidfd_open",
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fd is a fresh descriptor returned by the kernel.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// A duplicate of the target's `fd`, referring to the same open file
    /// description.
    pub fn get_fd(&self, pid: i32, fd: i32) -> Result<OwnedFd, DumpError> {
        // SAFETY: pidfd_getfd takes integers and returns a new fd we own.
        let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, self.0.as_raw_fd(), fd, 0) };
        if r < 0 {
            return Err(DumpError::Fd {
                pid,
                fd,
                reason: format!("pidfd_getfd: {}", std::io::Error::last_os_error()),
            });
        }
        // SAFETY: r is a fresh descriptor returned by the kernel.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }
}

fn same_file(pid: i32, a: i32, b: i32) -> bool {
    same_file_in(pid, a, pid, b)
}

/// Whether fd `a` of `pid_a` and fd `b` of `pid_b` are one open file
/// description.
fn same_file_in(pid_a: i32, a: i32, pid_b: i32, b: i32) -> bool {
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp compares two fds of two processes; no memory involved.
    unsafe { libc::syscall(libc::SYS_kcmp, pid_a, pid_b, KCMP_FILE, a, b) == 0 }
}

/// One process's open files and fd table.
pub struct ProcFiles {
    pub pid: i32,
    pub files: Vec<OpenFile>,
    pub fds: Vec<Fd>,
}

/// Across the process tree (in tree order): marks each open file
/// description that an earlier process also holds (inherited across fork)
/// as shared with that process's fd, then checks that every pipe has both
/// ends in the tree.
pub fn link_tree(procs: &mut [ProcFiles]) -> Result<(), DumpError> {
    for j in 1..procs.len() {
        let (earlier, rest) = procs.split_at_mut(j);
        let p = &mut rest[0];
        for f in &mut p.files {
            let Some(fd) = p.fds.iter().find(|d| d.file == f.id).map(|d| d.fd) else {
                continue;
            };
            'search: for q in earlier.iter() {
                for g in q.files.iter().filter(|g| g.shared.is_none()) {
                    let Some(qfd) = q.fds.iter().find(|d| d.file == g.id).map(|d| d.fd) else {
                        continue;
                    };
                    if same_file_in(q.pid, qfd, p.pid, fd) {
                        f.shared = Some(SharedFile {
                            pid: q.pid,
                            fd: qfd,
                        });
                        break 'search;
                    }
                }
            }
        }
    }
    pipe::check_pipes(procs)?;
    let tree: HashMap<u64, &crate::image::UnixSocket> = procs
        .iter()
        .flat_map(|p| p.files.iter())
        .filter(|f| f.shared.is_none())
        .filter_map(|f| match &f.kind {
            FileKind::UnixSocket(s) => Some((s.inode, s)),
            _ => None,
        })
        .collect();
    for p in procs.iter() {
        unix::check_unix(p.pid, &p.files, &p.fds, &tree)?;
    }
    Ok(())
}

fn list_fds(pid: i32) -> Result<Vec<i32>, DumpError> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<i32> = fs::read_dir(&dir)
        .map_err(|source| DumpError::Proc {
            pid,
            path: dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    Ok(fds)
}

/// The open files of `pid` and its fd table. Fails, naming the fd, on the
/// first one snaprun cannot restore. With `tcp_close`, open TCP
/// connections are recorded as closed instead of refused. A description
/// that is fd `f` of process `q` for some `(q, f)` in `inherit` is not
/// looked at but recorded as `Inherited { fd: f }`.
pub fn dump_fds(
    pid: i32,
    writer: &mut ImageWriter,
    tcp_close: bool,
    inherit: &[(i32, i32)],
) -> Result<(Vec<OpenFile>, Vec<Fd>), DumpError> {
    let pidfd = PidFd::open(pid)?;
    let mut files: Vec<OpenFile> = Vec::new();
    // The first fd seen of each open file description.
    let mut representative: Vec<(u32, i32)> = Vec::new();
    let mut fds = Vec::new();
    for fd in list_fds(pid)? {
        let info_path = format!("/proc/{pid}/fdinfo/{fd}");
        let info_text = match fs::read_to_string(&info_path) {
            Ok(t) => t,
            // Closed meanwhile (the process cannot run, but be exact).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(DumpError::Proc {
                    pid,
                    path: info_path,
                    source,
                })
            }
        };
        let info = parse_fdinfo(&info_text).map_err(|reason| DumpError::Fd { pid, fd, reason })?;
        // Restore reopens files without their locks: refuse rather than
        // drop one (flock, POSIX, OFD, lease: fdinfo lists each `lock:`).
        if let Some((_, lock)) = info.extra.iter().find(|(k, _)| k == "lock") {
            return Err(DumpError::Unsupported {
                pid,
                fd,
                what: format!(
                    "a file lock ({})",
                    lock.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
            });
        }
        let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
        if let Some(&(id, _)) = representative
            .iter()
            .find(|(_, rep)| same_file(pid, *rep, fd))
        {
            fds.push(Fd {
                fd,
                file: id,
                cloexec,
            });
            continue;
        }
        let inherited = inherit
            .iter()
            .find(|&&(q, f)| same_file_in(q, f, pid, fd))
            .map(|&(_, f)| FileKind::Inherited { fd: f });
        let kind = match inherited {
            Some(kind) => kind,
            None => dump_file(pid, fd, &info, &pidfd, &files, writer, tcp_close)?,
        };
        let id = files.len() as u32;
        files.push(OpenFile {
            id,
            flags: info.flags & !(libc::O_CLOEXEC as u32),
            kind,
            shared: None,
        });
        representative.push((id, fd));
        fds.push(Fd {
            fd,
            file: id,
            cloexec,
        });
    }
    epoll::resolve_targets(pid, &mut files, &fds)?;
    Ok((files, fds))
}

fn dump_file(
    pid: i32,
    fd: i32,
    info: &crate::sys::proc::FdInfo,
    pidfd: &PidFd,
    files: &[OpenFile],
    writer: &mut ImageWriter,
    tcp_close: bool,
) -> Result<FileKind, DumpError> {
    let unsupported = |what: String| DumpError::Unsupported { pid, fd, what };
    let link_path = format!("/proc/{pid}/fd/{fd}");
    let link = fs::read_link(&link_path)
        .map_err(|source| DumpError::Proc {
            pid,
            path: link_path.clone(),
            source,
        })?
        .to_string_lossy()
        .into_owned();
    if let Some(kind) = link.strip_prefix("anon_inode:") {
        let kind = kind.trim_start_matches('[').trim_end_matches(']');
        return anon::dump_anon(pid, fd, kind, info, pidfd)
            .unwrap_or_else(|| Err(unsupported(kind.to_string())));
    }
    if let Some(ino) = link
        .strip_prefix("socket:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        let inode: u64 = ino
            .parse()
            .map_err(|_| unsupported(format!("odd socket {link}")))?;
        let sock = pidfd.get_fd(pid, fd)?;
        let mut ctx = socket::SocketCtx {
            pid,
            fd,
            inode,
            tcp_close,
            writer,
        };
        return socket::dump_socket(&mut ctx, sock);
    }
    if let Some(ino) = link
        .strip_prefix("pipe:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        let inode: u64 = ino
            .parse()
            .map_err(|_| unsupported(format!("odd pipe {link}")))?;
        let dup = pidfd.get_fd(pid, fd)?;
        return pipe::dump_pipe(pid, fd, inode, info, dup, writer);
    }
    let meta = fs::metadata(&link_path).map_err(|source| DumpError::Proc {
        pid,
        path: link_path.clone(),
        source,
    })?;
    if let Some(path) = link.strip_suffix(" (deleted)") {
        // A file really named "... (deleted)" is still reachable by its
        // link; anything else is an unlinked (ghost) file.
        let literal =
            fs::metadata(&link).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
        if !literal {
            if memfd::memfd_name(&link).is_some() {
                if let Some(kind) = memfd::memfd_fd(pid, fd, &link_path, &meta, info)? {
                    return Ok(kind);
                }
            }
            if !meta.file_type().is_file() {
                return Err(unsupported(format!("deleted file {link}")));
            }
            if meta.nlink() != 0 {
                return Err(unsupported(format!(
                    "deleted file {link} that still has {} other links",
                    meta.nlink()
                )));
            }
            return file::dump_deleted(pid, fd, path, &link_path, &meta, info, writer);
        }
    }
    if !link.starts_with('/') {
        return Err(unsupported(format!("file {link}")));
    }
    let ft = meta.file_type();
    if ft.is_file() {
        Ok(FileKind::Regular {
            file: file_ref(&link, &meta),
            pos: info.pos,
        })
    } else if ft.is_dir() {
        Ok(FileKind::Directory {
            path: link,
            pos: info.pos,
        })
    } else if ft.is_char_device() {
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        if PORTABLE_CHAR_DEVICES.contains(&(major, minor)) {
            Ok(FileKind::CharDevice {
                path: link,
                major,
                minor,
            })
        } else if link.starts_with("/dev/nvidia") {
            Err(unsupported(format!(
                "GPU device {link} (CUDA processes need the GPU checkpoint, not supported yet)"
            )))
        } else {
            Err(unsupported(format!(
                "character device {link} ({major}:{minor})"
            )))
        }
    } else if ft.is_fifo() {
        let first = !files
            .iter()
            .any(|f| matches!(&f.kind, FileKind::Fifo { path, .. } if *path == link));
        pipe::dump_fifo(pid, fd, &link, &link_path, first, writer)
    } else {
        Err(unsupported(format!("file {link} of this type")))
    }
}

pub(super) fn fionread(fd: &OwnedFd) -> std::io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n)
}
