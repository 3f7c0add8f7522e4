//! Unix sockets: type, state, name, peer (by inode, from sock_diag), the
//! options the program set, and the bytes or datagrams waiting to be read,
//! copied with `MSG_PEEK` so the target keeps them.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::hex;
use crate::image::{Fd, FileKind, OpenFile, SocketFile, UnixName, UnixSocket, UnixState, UnixType};
use crate::sys::sock_diag;

use super::super::DumpError;
use super::socket::{changed_options, fresh_socket, getsockopt_int, raw_address, SocketCtx};

/// `tcp_states.h`: the state sock_diag reports for a listener.
const TCP_LISTEN: u8 = 10;
/// At most this many bytes are kept from one socket's queue.
pub const MAX_QUEUED: usize = 64 << 20;

/// A `sockaddr_un` as a name: `None` when unnamed.
pub(super) fn unix_name(addr: &[u8]) -> Option<UnixName> {
    let path = addr.get(2..).filter(|p| !p.is_empty())?;
    if path[0] == 0 {
        return Some(UnixName::Abstract(hex::encode(&path[1..])));
    }
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    Some(UnixName::Path(
        String::from_utf8_lossy(&path[..end]).into_owned(),
    ))
}

/// What a peek at a socket's receive queue found.
#[derive(Default)]
struct Queue {
    data: Vec<u8>,
    /// Message lengths (datagram and seqpacket sockets).
    messages: Vec<u32>,
    /// The sender's name of each named message.
    senders: Vec<UnixName>,
    /// File descriptors were in flight (SCM_RIGHTS).
    rights: bool,
}

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> std::io::Result<()> {
    // SAFETY: setsockopt reads one int from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Copies the receive queue without consuming it: with `SO_PEEK_OFF` set
/// (on the shared socket, put back after), each `MSG_PEEK` read goes on
/// where the last stopped, message by message. `shut` says the socket was
/// shut down for reading, so that a read of 0 bytes may be the end.
fn peek_queue(sock: &OwnedFd, stream: bool, shut: bool) -> Result<Queue, String> {
    let off = getsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
        .map_err(|e| format!("getsockopt SO_PEEK_OFF: {e}"))?;
    if off >= 0 {
        return Err(format!(
            "SO_PEEK_OFF is set ({off}), which snaprun does not keep yet"
        ));
    }
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
        .map_err(|e| format!("setsockopt SO_PEEK_OFF: {e}"))?;
    let result = peek_all(sock, stream, shut);
    setsockopt_int(sock, libc::SOL_SOCKET, libc::SO_PEEK_OFF, -1)
        .map_err(|e| format!("putting SO_PEEK_OFF back: {e}"))?;
    result
}

/// Reads of 0 bytes in a row after which a datagram socket shut down for
/// reading is taken to be at its end (an empty datagram also reads as 0).
const EOF_ZEROS: u32 = 64;

fn peek_all(sock: &OwnedFd, stream: bool, shut: bool) -> Result<Queue, String> {
    let mut q = Queue::default();
    // Empty datagrams seen but not yet recorded: on a socket shut down for
    // reading they may be the end of the queue instead.
    let mut zeros = 0;
    let mut buf = vec![0u8; 256 * 1024];
    let mut control = [0u64; 512];
    for _ in 0..1_000_000 {
        // SAFETY: sockaddr_un is plain data; all-zero is valid.
        let mut from: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: msghdr is plain data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_un).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_un>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC;
        // SAFETY: every pointer in msg refers to a live local buffer of the
        // length given beside it.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EAGAIN) {
                q.messages.extend(std::iter::repeat_n(0, zeros as usize));
                return Ok(q);
            }
            return Err(format!("recvmsg(MSG_PEEK): {e}"));
        }
        q.rights |= close_passed_fds(&msg);
        if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err("a queued message did not fit snaprun's buffer".into());
        }
        let n = n as usize;
        if stream && n == 0 {
            // The peer shut down its end: nothing more will come.
            return Ok(q);
        }
        if !stream && shut && n == 0 {
            zeros += 1;
            if zeros == EOF_ZEROS {
                return Ok(q);
            }
            continue;
        }
        if !stream {
            q.messages.extend(std::iter::repeat_n(0, zeros as usize));
            zeros = 0;
        }
        q.data.extend_from_slice(&buf[..n]);
        if q.data.len() > MAX_QUEUED {
            return Err(format!("more than {MAX_QUEUED} bytes queued"));
        }
        if !stream {
            q.messages.push(n as u32);
            let name_len = (msg.msg_namelen as usize).min(std::mem::size_of_val(&from));
            // SAFETY: `from` is live and at least `name_len` bytes long.
            let raw = unsafe {
                std::slice::from_raw_parts(
                    (&from as *const libc::sockaddr_un).cast::<u8>(),
                    name_len,
                )
            };
            if let Some(name) = unix_name(raw) {
                q.senders.push(name);
            }
        }
    }
    Err("the queue did not end".into())
}

/// Closes the fds a peek received with SCM_RIGHTS; true if there were any.
fn close_passed_fds(msg: &libc::msghdr) -> bool {
    let mut found = false;
    // SAFETY: msg was filled by recvmsg; the CMSG macros walk its control
    // buffer within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                found = true;
                let data = libc::CMSG_DATA(c) as *const i32;
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    // The duplicates are ours: close them.
                    drop(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    found
}

pub(super) fn dump_unix(
    ctx: &mut SocketCtx<'_>,
    sock: &OwnedFd,
    ty: i32,
) -> Result<FileKind, DumpError> {
    let sock_type = match ty {
        libc::SOCK_STREAM => UnixType::Stream,
        libc::SOCK_DGRAM => UnixType::Dgram,
        _ => UnixType::Seqpacket,
    };
    let d = sock_diag::unix_socket_of(ctx.pid, ctx.inode)
        .map_err(|e| ctx.err(format!("unix socket: {e}")))?;
    let name =
        raw_address(sock, false).map_err(|e| ctx.err(format!("unix socket: getsockname: {e}")))?;
    let name = unix_name(&name);
    let peer_name = raw_address(sock, true).ok();
    let connected = peer_name.is_some();
    let peer_name = peer_name.as_deref().and_then(unix_name);
    if let Some(UnixName::Path(p)) = &name {
        if !p.starts_with('/') {
            return Err(ctx.unsupported(format!("unix socket bound to the relative path {p}")));
        }
    }
    let state = if d.state == TCP_LISTEN {
        UnixState::Listening
    } else if connected {
        UnixState::Connected
    } else if name.is_some() {
        UnixState::Bound
    } else {
        UnixState::Unbound
    };
    let shown = name
        .as_ref()
        .map(|n| n.display())
        .unwrap_or_else(|| "(unnamed)".into());
    let mut backlog = 0;
    if state == UnixState::Listening {
        let (waiting, max) = d.rqlen.unwrap_or((d.pending.len() as u32, 0));
        if waiting > 0 {
            return Err(ctx.unsupported(format!(
                "listening unix socket {shown} with {waiting} connection(s) waiting to be accepted"
            )));
        }
        backlog = max;
    }
    // The socket file is made again at restore: it must still be this
    // socket's.
    let mut file = None;
    if let (Some(UnixName::Path(path)), UnixState::Bound | UnixState::Listening) = (&name, state) {
        // In the process's own view of the filesystem (a container's
        // mount namespace and root).
        let meta = std::fs::symlink_metadata(format!("/proc/{}/root{path}", ctx.pid))
            .ok()
            .filter(|m| m.file_type().is_socket() && d.bound_to(m.dev(), m.ino()));
        let Some(meta) = meta else {
            return Err(ctx.unsupported(format!(
                "unix socket bound to {path} whose socket file was removed or replaced"
            )));
        };
        file = Some(SocketFile {
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    let fresh = fresh_socket(libc::AF_UNIX, ty, 0)
        .map_err(|e| ctx.err(format!("a unix socket to compare options with: {e}")))?;
    let options = changed_options(sock, &fresh, &[]);
    let mut data = None;
    let mut messages = Vec::new();
    if state != UnixState::Listening {
        let shut = d.shutdown & 1 != 0;
        let q = peek_queue(sock, sock_type == UnixType::Stream, shut)
            .map_err(|e| ctx.err(format!("unix socket {shown}: reading its queue: {e}")))?;
        if q.rights {
            return Err(ctx.unsupported(format!(
                "unix socket {shown} with file descriptors in flight (SCM_RIGHTS)"
            )));
        }
        if let Some(s) = q.senders.iter().find(|s| Some(*s) != peer_name.as_ref()) {
            return Err(ctx.unsupported(format!(
                "unix socket {shown} with datagrams queued from {}, not its peer",
                s.display()
            )));
        }
        if !q.data.is_empty() || !q.messages.is_empty() {
            data = Some(ctx.writer.add(&q.data)?);
            messages = q.messages;
        }
    }
    Ok(FileKind::UnixSocket(UnixSocket {
        inode: ctx.inode,
        sock_type,
        state,
        name,
        file,
        peer: (connected && d.peer != 0).then_some(u64::from(d.peer)),
        peer_name,
        backlog,
        shutdown: d.shutdown,
        options,
        data,
        messages,
    }))
}

/// Checks the unix sockets of the process as a whole: each connection
/// must be restorable from what is in it, or (a connection both ways) have
/// its other end in another process of the tree (`tree`: every unix socket
/// of the tree by inode).
pub(super) fn check_unix(
    pid: i32,
    files: &[OpenFile],
    fds: &[Fd],
    tree: &HashMap<u64, &UnixSocket>,
) -> Result<(), DumpError> {
    let socks: HashMap<u64, (&UnixSocket, u32)> = files
        .iter()
        .filter_map(|f| match &f.kind {
            FileKind::UnixSocket(s) => Some((s.inode, (s, f.id))),
            _ => None,
        })
        .collect();
    for (s, id) in socks.values() {
        let fd = fds
            .iter()
            .find(|d| d.file == *id)
            .map(|d| d.fd)
            .unwrap_or(-1);
        let refuse = |what: String| DumpError::Unsupported { pid, fd, what };
        let queued = s.data.is_some();
        let peer = s.peer.map(|p| (p, socks.get(&p).map(|(ps, _)| *ps)));
        match (s.state, peer) {
            // The other end of a connection in another process of the tree.
            (UnixState::Connected, Some((p, None)))
                if tree.get(&p).is_some_and(|ps| ps.peer == Some(s.inode)) => {}
            (UnixState::Connected, Some((p, None))) => {
                if s.sock_type != UnixType::Dgram {
                    return Err(refuse(format!(
                        "{} connected to socket:[{p}] outside the process tree",
                        s.label()
                    )));
                }
                if s.peer_name.is_none() || queued {
                    return Err(refuse(format!(
                        "{} connected to socket:[{p}] outside the process tree{}",
                        s.label(),
                        if queued {
                            ", with datagrams queued"
                        } else {
                            ", which has no name"
                        }
                    )));
                }
            }
            (UnixState::Connected, Some((p, Some(ps)))) => {
                let mutual = ps.peer == Some(s.inode);
                if !mutual && (queued || ps.name.is_none()) {
                    return Err(refuse(format!(
                        "{} connected one way to socket:[{p}]{}",
                        s.label(),
                        if queued {
                            " with datagrams queued"
                        } else {
                            ", which has no name"
                        }
                    )));
                }
            }
            // Connected to a peer that is gone, or not connected: only
            // datagrams from elsewhere can be queued on an unconnected one.
            (UnixState::Connected, None) => {}
            _ if queued => {
                return Err(refuse(format!(
                    "{} with datagrams queued from senders outside a connection",
                    s.label()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(path: &[u8]) -> Vec<u8> {
        let mut a = (libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(path);
        a
    }

    #[test]
    fn names_are_decoded() {
        assert_eq!(unix_name(&addr(b"")), None);
        assert_eq!(
            unix_name(&addr(b"/run/x.sock\0")),
            Some(UnixName::Path("/run/x.sock".into()))
        );
        assert_eq!(
            unix_name(&addr(b"\0ab")),
            Some(UnixName::Abstract("6162".into()))
        );
        assert_eq!(UnixName::Abstract("6162".into()).display(), "@ab");
    }
}
