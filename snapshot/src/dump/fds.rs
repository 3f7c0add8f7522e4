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

use crate::image::{Fd, FileKind, ImageWriter, OpenFile, SocketOptions};
use crate::sys::proc::parse_fdinfo;

use super::memory::file_ref;
use super::DumpError;

/// Character devices that are the same everywhere: mem class (1:x) null,
/// zero, full, random, urandom.
const PORTABLE_CHAR_DEVICES: &[(u32, u32)] = &[(1, 3), (1, 5), (1, 7), (1, 8), (1, 9)];

/// Backlog of restored listening sockets. The original backlog is not
/// readable through /proc or getsockopt; the kernel caps this value at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

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
    const KCMP_FILE: i32 = 0;
    // SAFETY: kcmp compares two fds of a process; no memory involved.
    unsafe { libc::syscall(libc::SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0 }
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
/// first one snaprun cannot restore.
pub fn dump_fds(pid: i32, writer: &mut ImageWriter) -> Result<(Vec<OpenFile>, Vec<Fd>), DumpError> {
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
        let kind = dump_file(pid, fd, &info, &pidfd, writer)?;
        let id = files.len() as u32;
        files.push(OpenFile {
            id,
            flags: info.flags & !(libc::O_CLOEXEC as u32),
            kind,
        });
        representative.push((id, fd));
        fds.push(Fd {
            fd,
            file: id,
            cloexec,
        });
    }
    check_pipes(pid, &files, &fds)?;
    Ok((files, fds))
}

/// Both ends of every pipe must be in the process, one description each.
fn check_pipes(pid: i32, files: &[OpenFile], fds: &[Fd]) -> Result<(), DumpError> {
    let mut ends: HashMap<u64, (u32, u32)> = HashMap::new();
    for f in files {
        if let FileKind::Pipe {
            inode, write_end, ..
        } = f.kind
        {
            let e = ends.entry(inode).or_default();
            if write_end {
                e.1 += 1
            } else {
                e.0 += 1
            }
        }
    }
    for (inode, (r, w)) in ends {
        if (r, w) != (1, 1) {
            let fd = files
                .iter()
                .find(|f| matches!(f.kind, FileKind::Pipe { inode: i, .. } if i == inode))
                .and_then(|f| fds.iter().find(|d| d.file == f.id))
                .map(|d| d.fd)
                .unwrap_or(-1);
            let what = if r == 0 || w == 0 {
                format!("pipe:[{inode}] with its other end outside the process")
            } else {
                format!("pipe:[{inode}] opened more than once at one end")
            };
            return Err(DumpError::Unsupported { pid, fd, what });
        }
    }
    Ok(())
}

fn dump_file(
    pid: i32,
    fd: i32,
    info: &crate::sys::proc::FdInfo,
    pidfd: &PidFd,
    writer: &mut ImageWriter,
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
    if link == "anon_inode:[eventfd]" {
        return eventfd(info).map_err(|e| DumpError::Fd { pid, fd, reason: e });
    }
    if let Some(kind) = link.strip_prefix("anon_inode:") {
        let kind = kind.trim_start_matches('[').trim_end_matches(']');
        return Err(unsupported(kind.to_string()));
    }
    if link.starts_with("socket:") {
        let sock = pidfd.get_fd(pid, fd)?;
        return dump_socket(sock).map_err(unsupported);
    }
    if let Some(ino) = link
        .strip_prefix("pipe:[")
        .and_then(|s| s.strip_suffix(']'))
    {
        let inode: u64 = ino
            .parse()
            .map_err(|_| unsupported(format!("odd pipe {link}")))?;
        let dup = pidfd.get_fd(pid, fd)?;
        return dump_pipe(pid, fd, inode, info, dup, writer);
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
            if !meta.file_type().is_file() {
                return Err(unsupported(format!("deleted file {link}")));
            }
            if meta.nlink() != 0 {
                return Err(unsupported(format!(
                    "deleted file {link} that still has {} other links",
                    meta.nlink()
                )));
            }
            return dump_deleted(pid, fd, path, &link_path, &meta, info, writer);
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
        let dup = pidfd.get_fd(pid, fd)?;
        let queued = fionread(&dup).map_err(|e| unsupported(format!("fifo {link}: {e}")))?;
        if queued > 0 {
            return Err(unsupported(format!(
                "fifo {link} with {queued} unread bytes"
            )));
        }
        Ok(FileKind::Fifo { path: link })
    } else {
        Err(unsupported(format!("file {link} of this type")))
    }
}

/// The largest deleted file whose content goes into a snapshot.
pub const MAX_DELETED_FILE: u64 = 64 << 20;

/// An open, unlinked regular file: its content is read through
/// `/proc/PID/fd/N` (opening that works although the file has no name) and
/// stored in the image.
fn dump_deleted(
    pid: i32,
    fd: i32,
    path: &str,
    link_path: &str,
    meta: &fs::Metadata,
    info: &crate::sys::proc::FdInfo,
    writer: &mut ImageWriter,
) -> Result<FileKind, DumpError> {
    use std::io::Read;
    let size = meta.len();
    if size > MAX_DELETED_FILE {
        return Err(DumpError::Unsupported {
            pid,
            fd,
            what: format!(
                "deleted file {path} of {size} bytes (at most {MAX_DELETED_FILE} are kept)"
            ),
        });
    }
    let proc_err = |source| DumpError::Proc {
        pid,
        path: link_path.to_string(),
        source,
    };
    let mut content = Vec::with_capacity(size as usize);
    fs::File::open(link_path)
        .map_err(proc_err)?
        .take(size + 1)
        .read_to_end(&mut content)
        .map_err(proc_err)?;
    if content.len() as u64 != size {
        return Err(DumpError::Fd {
            pid,
            fd,
            reason: format!(
                "deleted file {path}: read {} bytes, its size is {size}",
                content.len()
            ),
        });
    }
    let data = if content.is_empty() {
        None
    } else {
        Some(writer.add(&content)?)
    };
    Ok(FileKind::Deleted {
        path: path.to_string(),
        mode: meta.mode() & 0o7777,
        size,
        pos: info.pos,
        data,
    })
}

/// An eventfd's counter and mode, from its fdinfo.
fn eventfd(info: &crate::sys::proc::FdInfo) -> Result<FileKind, String> {
    let field = |name: &str| {
        info.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let count = field("eventfd-count")
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .ok_or("eventfd: no eventfd-count in fdinfo")?;
    // Kernels before 6.3 do not show the semaphore flag.
    let semaphore = match field("eventfd-semaphore") {
        Some(v) => v.trim() == "1",
        None => return Err("eventfd: this kernel does not show the semaphore flag".into()),
    };
    Ok(FileKind::EventFd { count, semaphore })
}

fn fionread(fd: &OwnedFd) -> std::io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into the live local.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n)
}

fn dump_pipe(
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

fn getsockopt_int(fd: &OwnedFd, level: i32, opt: i32) -> std::io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live int.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// The address a socket is bound to, as text and port.
pub fn local_address(fd: &OwnedFd) -> std::io::Result<(String, u16)> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into the storage.
    if unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } < 0
    {
        return Err(std::io::Error::last_os_error());
    }
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: &libc::sockaddr_in =
                unsafe { &*(&ss as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok((ip.to_string(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(&ss as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok((ip.to_string(), u16::from_be(sin6.sin6_port)))
        }
        f => Err(std::io::Error::other(format!("address family {f}"))),
    }
}

fn dump_socket(sock: OwnedFd) -> Result<FileKind, String> {
    let opt = |level, name| {
        getsockopt_int(&sock, level, name).map_err(|e| format!("socket: getsockopt: {e}"))
    };
    let family = opt(libc::SOL_SOCKET, libc::SO_DOMAIN)?;
    let ty = opt(libc::SOL_SOCKET, libc::SO_TYPE)?;
    let listening = opt(libc::SOL_SOCKET, libc::SO_ACCEPTCONN)? != 0;
    let family_name = match family {
        libc::AF_UNIX => "unix",
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        libc::AF_NETLINK => "netlink",
        _ => "other-family",
    };
    let type_name = match ty {
        libc::SOCK_STREAM => "stream",
        libc::SOCK_DGRAM => "datagram",
        libc::SOCK_SEQPACKET => "seqpacket",
        libc::SOCK_RAW => "raw",
        _ => "other-type",
    };
    let inet = family == libc::AF_INET || family == libc::AF_INET6;
    if !(inet && ty == libc::SOCK_STREAM && listening) {
        let state = if listening {
            "listening"
        } else {
            "not listening"
        };
        return Err(format!("{family_name} {type_name} socket ({state})"));
    }
    let (address, port) = local_address(&sock).map_err(|e| format!("socket: getsockname: {e}"))?;
    let options = SocketOptions {
        reuseaddr: opt(libc::SOL_SOCKET, libc::SO_REUSEADDR)? != 0,
        reuseport: opt(libc::SOL_SOCKET, libc::SO_REUSEPORT)? != 0,
        v6only: family == libc::AF_INET6 && opt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)? != 0,
        nodelay: opt(libc::IPPROTO_TCP, libc::TCP_NODELAY)? != 0,
        backlog: LISTEN_BACKLOG,
    };
    Ok(FileKind::TcpListen {
        family,
        address,
        port,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::proc::parse_fdinfo;

    #[test]
    fn eventfd_counter_is_hex_and_semaphore_is_read() {
        let info = parse_fdinfo(
            "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\neventfd-count:        100000005\neventfd-id: 1\neventfd-semaphore: 1\n",
        )
        .unwrap();
        assert_eq!(
            eventfd(&info).unwrap(),
            FileKind::EventFd {
                count: 0x1_0000_0005,
                semaphore: true
            }
        );
        let old = parse_fdinfo("pos:\t0\nflags:\t02\neventfd-count: 0\n").unwrap();
        assert!(eventfd(&old).unwrap_err().contains("semaphore"));
    }
}
