//! Recreating the fd table inside the target: each open file description
//! once (opened, or created, by injected syscalls, so paths resolve in the
//! target's mount namespace), then placed at its fd numbers with `dup3`.

use std::collections::{BTreeSet, HashMap};

use crate::image::{FileKind, Image, OpenFile, ProcessImage, SocketOptions};
use crate::sys::remote::{self, Remote, Scratch};

use super::RestoreError;

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

fn fd_err(pid: i32, fd: i32, reason: String) -> RestoreError {
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
                    let (r, w) = create_pipe(remote, scratch, image, p, *inode, first, high)?;
                    let (mine, other) = if *write_end { (w, r) } else { (r, w) };
                    pipe_ends.insert((*inode, !*write_end), other);
                    mine
                }
            },
            _ => open_file(remote, scratch, image, file, first)?,
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
    Ok(())
}

fn open_file(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
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
        FileKind::Fifo { path } => {
            // Opening a FIFO blocks until the other end is opened, unless
            // non-blocking; the real flags are set after.
            let new = open(remote, scratch, path, flags | libc::O_NONBLOCK)?;
            remote.syscall(
                &format!("fd {fd}: fcntl(F_SETFL)"),
                libc::SYS_fcntl,
                &[new, libc::F_SETFL as u64, flags as u64],
            )?;
            Ok(new)
        }
        FileKind::TcpListen {
            family,
            address,
            port,
            options,
        } => listen_socket(
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
            restore_deleted(remote, scratch, fd, flags, path, *mode, *pos, &content)
        }
        FileKind::EventFd { count, semaphore } => {
            let what = format!("fd {fd}: eventfd");
            let mut efd_flags = file.flags as i32 & libc::O_NONBLOCK;
            if *semaphore {
                efd_flags |= libc::EFD_SEMAPHORE;
            }
            let new = remote.syscall(&what, libc::SYS_eventfd2, &[0, efd_flags as u64])?;
            // The counter is 64-bit; eventfd2's initial value only 32.
            if *count > 0 {
                let what = format!("{what}: write counter");
                remote::write_all(remote, scratch, &what, new, &count.to_ne_bytes())?;
            }
            Ok(new)
        }
        FileKind::Pipe { .. } => unreachable!("pipes are created by create_pipe"),
    }
}

/// Moves the target's `new` (restoring fd `fd`, described by `what`) to
/// offset `pos`.
fn seek_to(
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

/// The name a deleted file is recreated under, on `attempt` (0 first): its
/// own path while its directory exists, else a name beside it (or in /tmp
/// when the directory is gone) that nothing else uses.
pub fn ghost_path(path: &str, pid: i32, dir_gone: bool, attempt: u32) -> String {
    let (base, n) = if dir_gone {
        let name = path.rsplit('/').next().filter(|n| !n.is_empty());
        (format!("/tmp/{}", name.unwrap_or("file")), attempt + 1)
    } else {
        (path.to_string(), attempt)
    };
    match n {
        0 => base,
        1 => format!("{base}.snaprun-ghost-{pid}"),
        n => format!("{base}.snaprun-ghost-{pid}-{n}"),
    }
}

/// Recreates an open, deleted file inside the target: created under a free
/// name, filled with its content, opened with its flags at its offset, and
/// unlinked again. Returns the new fd.
#[allow(clippy::too_many_arguments)]
fn restore_deleted(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    path: &str,
    mode: u32,
    pos: u64,
    content: &[u8],
) -> Result<u64, RestoreError> {
    const ATTEMPTS: u32 = 16;
    let pid = remote.pid();
    let what = format!("fd {fd}: deleted file {path}");
    // Created owner-writable whatever the mode and umask; the mode is set
    // with fchmod once the file is reopened.
    let create = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC;
    let mut dir_gone = false;
    let mut attempt = 0;
    let (name, writer) = loop {
        if attempt >= ATTEMPTS {
            return Err(fd_err(
                pid,
                fd,
                format!("deleted file {path}: no free name to recreate it under"),
            ));
        }
        let name = ghost_path(path, pid, dir_gone, attempt);
        let r = remote::open_raw(
            remote,
            scratch,
            &format!("{what}: create {name}"),
            &name,
            create,
            0o600,
        )?;
        if r >= 0 {
            break (name, r as u64);
        }
        match (-r) as i32 {
            libc::EEXIST => attempt += 1,
            libc::ENOENT if !dir_gone => {
                dir_gone = true;
                attempt = 0;
            }
            e => {
                return Err(fd_err(
                    pid,
                    fd,
                    format!(
                        "deleted file {path}: creating {name}: {}",
                        std::io::Error::from_raw_os_error(e)
                    ),
                ))
            }
        }
    };
    let filled = fill_ghost(
        remote, scratch, fd, flags, path, &name, writer, mode, pos, content,
    );
    if filled.is_err() {
        // Best effort: leave no stray file behind; the first error is the
        // one reported.
        if let Ok(p) = scratch.put_cstr(remote, &name) {
            let _ = remote.raw_syscall(
                &format!("{what}: unlink {name}"),
                libc::SYS_unlinkat,
                &[libc::AT_FDCWD as u64, p, 0],
            );
        }
        scratch.reset();
        let _ = remote.raw_syscall("close", libc::SYS_close, &[writer]);
        return filled;
    }
    let r = remote.syscall("close", libc::SYS_close, &[writer]);
    r.map_err(RestoreError::from).and(filled)
}

/// Writes a recreated deleted file's content through `writer`, opens it
/// again with `flags` at `pos`, sets its mode and unlinks it. Returns the
/// new fd.
#[allow(clippy::too_many_arguments)]
fn fill_ghost(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    path: &str,
    name: &str,
    writer: u64,
    mode: u32,
    pos: u64,
    content: &[u8],
) -> Result<u64, RestoreError> {
    let what = format!("fd {fd}: deleted file {path}");
    remote::write_all(remote, scratch, &format!("{what}: write"), writer, content)?;
    let new = remote::open(
        remote,
        scratch,
        &format!("{what}: open {name}"),
        name,
        flags,
    )?;
    remote.syscall(
        &format!("{what}: fchmod {mode:o}"),
        libc::SYS_fchmod,
        &[writer, mode as u64],
    )?;
    if flags & libc::O_PATH == 0 {
        seek_to(remote, &what, fd, new, pos)?;
    }
    let p = scratch.put_cstr(remote, name)?;
    let r = remote.syscall(
        &format!("{what}: unlink {name}"),
        libc::SYS_unlinkat,
        &[libc::AT_FDCWD as u64, p, 0],
    );
    scratch.reset();
    if let Err(e) = r {
        let _ = remote.raw_syscall("close", libc::SYS_close, &[new]);
        return Err(e.into());
    }
    Ok(new)
}

/// `sockaddr_in`/`sockaddr_in6` bytes for an address and port.
pub fn sockaddr(family: i32, address: &str, port: u16) -> Result<Vec<u8>, String> {
    match family {
        libc::AF_INET => {
            let ip: std::net::Ipv4Addr = address
                .parse()
                .map_err(|_| format!("bad IPv4 address {address}"))?;
            let mut b = vec![0u8; 16];
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[4..8].copy_from_slice(&ip.octets());
            Ok(b)
        }
        libc::AF_INET6 => {
            let ip: std::net::Ipv6Addr = address
                .parse()
                .map_err(|_| format!("bad IPv6 address {address}"))?;
            let mut b = vec![0u8; 28];
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[2..4].copy_from_slice(&port.to_be_bytes());
            b[8..24].copy_from_slice(&ip.octets());
            Ok(b)
        }
        f => Err(format!("address family {f}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn listen_socket(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    family: i32,
    address: &str,
    port: u16,
    options: &SocketOptions,
) -> Result<u64, RestoreError> {
    let pid = remote.pid();
    let what = format!("fd {fd}: tcp {address}:{port}");
    let ty = libc::SOCK_STREAM
        | if flags & libc::O_NONBLOCK != 0 {
            libc::SOCK_NONBLOCK
        } else {
            0
        };
    let s = remote.syscall(
        &format!("{what}: socket"),
        libc::SYS_socket,
        &[family as u64, ty as u64, 0],
    )?;
    let one = scratch.put(remote, &1i32.to_ne_bytes())?;
    let mut opts = vec![];
    if options.reuseaddr {
        opts.push((libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"));
    }
    if options.reuseport {
        opts.push((libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"));
    }
    if options.v6only {
        opts.push((libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, "IPV6_V6ONLY"));
    }
    if options.nodelay {
        opts.push((libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY"));
    }
    for (level, name, label) in opts {
        remote.syscall(
            &format!("{what}: setsockopt {label}"),
            libc::SYS_setsockopt,
            &[s, level as u64, name as u64, one, 4],
        )?;
    }
    let addr = sockaddr(family, address, port).map_err(|reason| fd_err(pid, fd, reason))?;
    let a = scratch.put(remote, &addr)?;
    remote.syscall(
        &format!("{what}: bind"),
        libc::SYS_bind,
        &[s, a, addr.len() as u64],
    )?;
    remote.syscall(
        &format!("{what}: listen"),
        libc::SYS_listen,
        &[s, options.backlog as u64],
    )?;
    scratch.reset();
    Ok(s)
}

/// Creates a pipe with its capacity, flags and buffered bytes; returns
/// (read end, write end) as fds of the target.
fn create_pipe(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    p: &ProcessImage,
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
    for f in &p.files {
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
    for f in &p.files {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn ghost_names_avoid_taken_paths_and_missing_directories() {
        assert_eq!(ghost_path("/w/gone.bin", 7, false, 0), "/w/gone.bin");
        assert_eq!(
            ghost_path("/w/gone.bin", 7, false, 1),
            "/w/gone.bin.snaprun-ghost-7"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, false, 3),
            "/w/gone.bin.snaprun-ghost-7-3"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, true, 0),
            "/tmp/gone.bin.snaprun-ghost-7"
        );
        assert_eq!(
            ghost_path("/w/gone.bin", 7, true, 1),
            "/tmp/gone.bin.snaprun-ghost-7-2"
        );
        assert_eq!(ghost_path("/", 7, true, 0), "/tmp/file.snaprun-ghost-7");
    }

    #[test]
    fn deleted_file_is_recreated_filled_reopened_and_unlinked() {
        let mut fake = FakeRemote::default();
        let what = "fd 10: deleted file /w/gone.bin";
        fake.results.insert(
            format!("{what}: create /w/gone.bin"),
            vec![-(libc::EEXIST as i64)],
        );
        fake.results
            .insert(format!("{what}: write"), vec![32768, 32768, 4]);
        fake.results.insert(format!("{what}: lseek"), vec![5000]);
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        let content = vec![7u8; 65540];
        let fd = restore_deleted(
            &mut fake,
            &mut scratch,
            10,
            libc::O_RDWR,
            "/w/gone.bin",
            0o640,
            5000,
            &content,
        )
        .unwrap();
        let ghost = "/w/gone.bin.snaprun-ghost-4242";
        let names: Vec<&str> = fake.calls.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("{what}: create /w/gone.bin"),
                format!("{what}: create {ghost}"),
                format!("{what}: write"),
                format!("{what}: write"),
                format!("{what}: write"),
                format!("{what}: open {ghost}"),
                format!("{what}: fchmod 640"),
                format!("{what}: lseek"),
                format!("{what}: unlink {ghost}"),
                "close".to_string(),
            ]
        );
        let writer = fake.calls[1].2.len();
        assert_eq!(writer, 4);
        assert_eq!(fake.calls[2].2[2], 32768);
        assert_eq!(fake.calls[4].2[2], 4);
        assert_eq!(fake.calls[5].2[2], libc::O_RDWR as u64);
        assert_eq!(fd, 102);
        // The writer (the first fd the fake handed out) is the one closed.
        assert_eq!(fake.calls[9].2, vec![101]);
    }

    #[test]
    fn deleted_file_goes_to_tmp_when_its_directory_is_gone() {
        let mut fake = FakeRemote::default();
        let what = "fd 3: deleted file /gone/x";
        fake.results.insert(
            format!("{what}: create /gone/x"),
            vec![-(libc::ENOENT as i64)],
        );
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        restore_deleted(
            &mut fake,
            &mut scratch,
            3,
            libc::O_RDONLY,
            "/gone/x",
            0o600,
            0,
            &[],
        )
        .unwrap();
        assert_eq!(
            fake.calls[1].0,
            format!("{what}: create /tmp/x.snaprun-ghost-4242")
        );
        assert!(fake
            .calls
            .iter()
            .any(|c| c.0 == format!("{what}: unlink /tmp/x.snaprun-ghost-4242")));
    }

    #[test]
    fn sockaddrs_are_laid_out_as_the_kernel_wants() {
        let v4 = sockaddr(libc::AF_INET, "127.0.0.1", 8080).unwrap();
        assert_eq!(v4.len(), 16);
        assert_eq!(&v4[2..8], &[0x1f, 0x90, 127, 0, 0, 1]);
        let v6 = sockaddr(libc::AF_INET6, "::1", 80).unwrap();
        assert_eq!(v6.len(), 28);
        assert_eq!(v6[23], 1);
        assert!(sockaddr(libc::AF_INET, "nope", 1).is_err());
    }
}
