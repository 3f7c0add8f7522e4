//! A small `NETLINK_SOCK_DIAG` client: what the kernel tells about one
//! unix socket, by inode (its peer, name, bound file, queue lengths,
//! pending connections and shutdown state), as `ss -x` shows it.
//!
//! The query runs in snaprun's network namespace, so it finds sockets of
//! processes in that namespace only.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_HDR: usize = 16;
const UNIX_DIAG_MSG: usize = 16;

const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// What sock_diag says about a unix socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnixDiag {
    pub inode: u32,
    /// `SOCK_STREAM`, `SOCK_DGRAM` or `SOCK_SEQPACKET`.
    pub sock_type: u8,
    /// A `tcp_states.h` value: 1 connected, 7 unconnected, 10 listening.
    pub state: u8,
    /// The address's path bytes (`sun_path`, a leading NUL for abstract
    /// names); `None` when unnamed.
    pub name: Option<Vec<u8>>,
    /// Inode and device of the bound socket file; the device in the
    /// kernel's own encoding (major << 20 | minor), see [`Self::bound_to`].
    pub vfs: Option<(u32, u32)>,
    /// The peer's inode (0 when the peer is gone).
    pub peer: u32,
    /// Inodes of connections waiting to be accepted (listeners).
    pub pending: Vec<u32>,
    /// (receive queue, send queue); for a listener (waiting connections,
    /// backlog).
    pub rqlen: Option<(u32, u32)>,
    pub shutdown: u8,
}

impl UnixDiag {
    /// Whether the socket is bound to the file with `st_dev` `dev` and
    /// inode `ino` (as `stat` gives them).
    pub fn bound_to(&self, dev: u64, ino: u64) -> bool {
        let kdev = ((libc::major(dev) as u64) << 20) | (libc::minor(dev) as u64 & 0xf_ffff);
        self.vfs == Some((ino as u32, kdev as u32))
    }
}

/// Builds the request for the unix socket with inode `ino`, or for every
/// unix socket (`ino` 0, a dump).
fn request(ino: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(NLMSG_HDR + 24);
    let flags = if ino == 0 {
        libc::NLM_F_REQUEST | libc::NLM_F_DUMP
    } else {
        libc::NLM_F_REQUEST
    };
    b.extend_from_slice(&((NLMSG_HDR + 24) as u32).to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(flags as u16).to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid
    b.push(libc::AF_UNIX as u8);
    b.push(0); // protocol
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    b.extend_from_slice(&ino.to_ne_bytes());
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    b.extend_from_slice(&show.to_ne_bytes());
    // No cookie: look the socket up by inode alone.
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Parses one reply: a `unix_diag_msg` with its attributes, or an error.
/// `ino` 0 accepts any socket.
pub fn parse_reply(b: &[u8], ino: u32) -> Result<UnixDiag, String> {
    let len = u32_at(b, 0).ok_or("short netlink reply")? as usize;
    let ty = u16_at(b, 4).ok_or("short netlink reply")?;
    let b = b.get(..len).ok_or("truncated netlink reply")?;
    if ty == libc::NLMSG_ERROR as u16 {
        let errno = u32_at(b, NLMSG_HDR).ok_or("short netlink error")? as i32;
        return Err(std::io::Error::from_raw_os_error(-errno).to_string());
    }
    if ty != SOCK_DIAG_BY_FAMILY {
        return Err(format!("unexpected netlink message type {ty}"));
    }
    let m = NLMSG_HDR;
    let msg = b.get(m..m + UNIX_DIAG_MSG).ok_or("short unix_diag_msg")?;
    if ino != 0 && u32_at(msg, 4) != Some(ino) {
        return Err(format!("reply about inode {:?}", u32_at(msg, 4)));
    }
    let mut d = UnixDiag {
        inode: u32_at(msg, 4).unwrap_or(0),
        sock_type: msg[1],
        state: msg[2],
        ..Default::default()
    };
    let mut at = m + UNIX_DIAG_MSG;
    while at + 4 <= b.len() {
        let alen = u16_at(b, at).unwrap_or(0) as usize;
        let aty = u16_at(b, at + 2).unwrap_or(0);
        if alen < 4 || at + alen > b.len() {
            return Err(format!("bad attribute length {alen}"));
        }
        let v = &b[at + 4..at + alen];
        match aty {
            UNIX_DIAG_NAME => d.name = Some(v.to_vec()),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(v, 0).unwrap_or(0), u32_at(v, 4).unwrap_or(0))),
            UNIX_DIAG_PEER => d.peer = u32_at(v, 0).unwrap_or(0),
            UNIX_DIAG_ICONS => d.pending = v.chunks_exact(4).filter_map(|c| u32_at(c, 0)).collect(),
            UNIX_DIAG_RQLEN => {
                d.rqlen = Some((u32_at(v, 0).unwrap_or(0), u32_at(v, 4).unwrap_or(0)))
            }
            UNIX_DIAG_SHUTDOWN => d.shutdown = v.first().copied().unwrap_or(0),
            _ => {}
        }
        at += (alen + 3) & !3;
    }
    Ok(d)
}

fn diag_socket() -> Result<OwnedFd, String> {
    // SAFETY: socket takes integers and returns a new fd we own.
    let s = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if s < 0 {
        return Err(format!(
            "netlink sock_diag socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: s is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// Sends the request for `ino` (0: all) and returns the first reply.
fn ask(s: &OwnedFd, ino: u32, buf: &mut [u8]) -> Result<usize, String> {
    let req = request(ino);
    // SAFETY: send reads `req.len()` bytes from a live buffer; the kernel
    // is the default destination of a netlink socket.
    if unsafe { libc::send(s.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(format!(
            "sock_diag request: {}",
            std::io::Error::last_os_error()
        ));
    }
    receive(s, buf)
}

fn receive(s: &OwnedFd, buf: &mut [u8]) -> Result<usize, String> {
    // SAFETY: recv writes at most `buf.len()` bytes into the live buffer.
    let n = unsafe { libc::recv(s.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        return Err(format!(
            "sock_diag reply: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(n as usize)
}

/// A sock_diag socket in the network namespace of process `pid` (a netlink
/// socket belongs to the namespace it was made in): made by a short-lived
/// thread that enters that namespace, so this process's own threads stay
/// where they are. In snaprun's own namespace, made directly.
fn diag_socket_of(pid: i32) -> Result<OwnedFd, String> {
    let theirs = format!("/proc/{pid}/ns/net");
    let same = match (
        std::fs::metadata(&theirs),
        std::fs::metadata("/proc/self/ns/net"),
    ) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        }
        (Err(e), _) => return Err(format!("{theirs}: {e}")),
        (_, Err(e)) => return Err(format!("/proc/self/ns/net: {e}")),
    };
    if same {
        return diag_socket();
    }
    let ns = std::fs::File::open(&theirs).map_err(|e| format!("{theirs}: {e}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns with an fd we own; it moves only this thread,
            // which ends right after making the socket.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "entering the network namespace of pid {pid}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            diag_socket()
        })
        .join()
        .map_err(|_| "the sock_diag thread panicked".to_string())?
    })
}

/// Asks the kernel about the unix socket with inode `ino` of process
/// `pid` (in that process's network namespace).
pub fn unix_socket_of(pid: i32, ino: u64) -> Result<UnixDiag, String> {
    let ino32 = u32::try_from(ino)
        .ok()
        .filter(|&i| i != 0)
        .ok_or_else(|| format!("inode {ino} does not fit sock_diag"))?;
    let s = diag_socket_of(pid)?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = ask(&s, ino32, &mut buf)?;
    parse_reply(&buf[..n], ino32).map_err(|e| format!("sock_diag about socket:[{ino}]: {e}"))
}

/// Asks the kernel about the unix socket with inode `ino`.
pub fn unix_socket(ino: u64) -> Result<UnixDiag, String> {
    let ino32 = u32::try_from(ino)
        .ok()
        .filter(|&i| i != 0)
        .ok_or_else(|| format!("inode {ino} does not fit sock_diag"))?;
    let s = diag_socket()?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = ask(&s, ino32, &mut buf)?;
    parse_reply(&buf[..n], ino32).map_err(|e| format!("sock_diag about socket:[{ino}]: {e}"))
}

/// Every unix socket of snaprun's network namespace.
pub fn all_unix_sockets() -> Result<Vec<UnixDiag>, String> {
    all_unix_sockets_in(diag_socket()?)
}

/// Every unix socket of the network namespace of process `pid`.
pub fn all_unix_sockets_of(pid: i32) -> Result<Vec<UnixDiag>, String> {
    all_unix_sockets_in(diag_socket_of(pid)?)
}

fn all_unix_sockets_in(s: OwnedFd) -> Result<Vec<UnixDiag>, String> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut n = ask(&s, 0, &mut buf)?;
    let mut out = Vec::new();
    loop {
        let mut at = 0usize;
        while at + NLMSG_HDR <= n {
            let len = u32_at(&buf, at).unwrap_or(0) as usize;
            let ty = u16_at(&buf, at + 4).unwrap_or(0);
            if len < NLMSG_HDR || at + len > n {
                return Err(format!("bad netlink message length {len}"));
            }
            if ty == libc::NLMSG_DONE as u16 {
                return Ok(out);
            }
            out.push(parse_reply(&buf[at..at + len], 0)?);
            at += (len + 3) & !3;
        }
        n = receive(&s, &mut buf)?;
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn inode(s: &UnixStream) -> u64 {
        let fd = s.as_raw_fd();
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    #[test]
    fn the_kernel_names_the_peer_and_queue_of_a_socketpair() {
        let (a, b) = UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"hello").unwrap();
        let d = unix_socket(inode(&b)).unwrap();
        assert_eq!(d.sock_type, libc::SOCK_STREAM as u8);
        assert_eq!(d.state, 1);
        assert_eq!(d.peer as u64, inode(&a));
        assert_eq!(d.rqlen.map(|r| r.0), Some(5));
        assert_eq!(d.name, None);
        a.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(unix_socket(inode(&a)).unwrap().shutdown, 2);
    }

    #[test]
    fn the_bound_file_is_named_by_device_and_inode_as_stat_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", l.as_raw_fd()))
            .unwrap()
            .ino();
        let d = unix_socket(ino).unwrap();
        assert_eq!(d.state, 10);
        assert!(d.bound_to(meta.dev(), meta.ino()), "{d:?} vs {meta:?}");
        assert!(!d.bound_to(meta.dev(), meta.ino() + 1));
    }

    #[test]
    fn a_dump_lists_every_socket() {
        let (a, b) = UnixStream::pair().unwrap();
        let all = all_unix_sockets().unwrap();
        for s in [&a, &b] {
            assert!(all.iter().any(|d| u64::from(d.inode) == inode(s)));
        }
    }

    #[test]
    fn errors_and_odd_replies_are_reported() {
        let mut err = vec![0u8; 36];
        err[0..4].copy_from_slice(&36u32.to_ne_bytes());
        err[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert!(parse_reply(&err, 1).unwrap_err().contains("No such file"));
        assert!(parse_reply(&err[..3], 1).is_err());
        let mut bad = vec![0u8; 40];
        bad[0..4].copy_from_slice(&40u32.to_ne_bytes());
        bad[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        bad[20..24].copy_from_slice(&7u32.to_ne_bytes());
        bad[32..34].copy_from_slice(&2u16.to_ne_bytes()); // attribute length < 4
        assert!(parse_reply(&bad, 7).unwrap_err().contains("attribute"));
        assert!(parse_reply(&bad, 8).unwrap_err().contains("inode"));
    }
}
