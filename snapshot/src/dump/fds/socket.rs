//! Sockets, looked at through a duplicate of the target's fd: what kind
//! they are, their addresses and the options the program set. TCP and UDP
//! are in `inet.rs`, unix sockets in `unix.rs`; every other family or
//! type is refused, naming it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::image::{FileKind, ImageWriter, SockOpt, SOCKET_OPTIONS};

use super::super::DumpError;
use super::{inet, unix};

/// What the socket dumpers need besides the socket.
pub(super) struct SocketCtx<'a> {
    pub pid: i32,
    pub fd: i32,
    /// The socket's inode (`socket:[INO]`).
    pub inode: u64,
    /// `checkpoint --tcp-close`: open TCP connections are kept as closed.
    pub tcp_close: bool,
    pub writer: &'a mut ImageWriter,
}

impl SocketCtx<'_> {
    pub fn err(&self, reason: String) -> DumpError {
        DumpError::Fd {
            pid: self.pid,
            fd: self.fd,
            reason,
        }
    }

    pub fn unsupported(&self, what: String) -> DumpError {
        DumpError::Unsupported {
            pid: self.pid,
            fd: self.fd,
            what,
        }
    }
}

pub(super) fn getsockopt_int(fd: &OwnedFd, level: i32, opt: i32) -> std::io::Result<i32> {
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

/// A socket's own (`peer` false) or peer address as raw bytes.
pub(super) fn raw_address(fd: &OwnedFd, peer: bool) -> std::io::Result<Vec<u8>> {
    // SAFETY: sockaddr_storage is plain data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let ptr = (&mut ss as *mut libc::sockaddr_storage).cast();
    // SAFETY: get{sock,peer}name write at most `len` bytes into the storage.
    let r = unsafe {
        if peer {
            libc::getpeername(fd.as_raw_fd(), ptr, &mut len)
        } else {
            libc::getsockname(fd.as_raw_fd(), ptr, &mut len)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: the storage is live and at least `len` bytes long.
    let bytes = unsafe {
        std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len)
    };
    Ok(bytes.to_vec())
}

/// The address a socket is bound to, as text and port.
pub fn local_address(fd: &OwnedFd) -> std::io::Result<(String, u16)> {
    inet_address(&raw_address(fd, false)?)
        .ok_or_else(|| std::io::Error::other("not an IPv4 or IPv6 address"))
}

/// Text and port of a `sockaddr_in`/`sockaddr_in6`.
pub(super) fn inet_address(b: &[u8]) -> Option<(String, u16)> {
    let family = i32::from(u16::from_ne_bytes(b.get(0..2)?.try_into().ok()?));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some((std::net::Ipv4Addr::from(ip).to_string(), port))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some((std::net::Ipv6Addr::from(ip).to_string(), port))
        }
        _ => None,
    }
}

/// A fresh socket of the given kind, in snaprun's own network namespace.
pub(super) fn fresh_socket(family: i32, ty: i32, protocol: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: socket takes integers and returns a new fd we own.
    let s = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, protocol) };
    if s < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: s is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(s) })
}

/// The options of `sock` that differ from those of `fresh`, a new socket
/// of the same kind. Options the kind does not have are skipped, and so
/// are those in `skip`.
pub(super) fn changed_options(sock: &OwnedFd, fresh: &OwnedFd, skip: &[&str]) -> Vec<SockOpt> {
    let mut out = Vec::new();
    for &(name, level, opt) in SOCKET_OPTIONS {
        if skip.contains(&name) {
            continue;
        }
        let (Ok(v), Ok(d)) = (
            getsockopt_int(sock, level, opt),
            getsockopt_int(fresh, level, opt),
        ) else {
            continue;
        };
        if v != d {
            out.push(SockOpt {
                name: name.to_string(),
                value: v,
            });
        }
    }
    out
}

fn family_name(family: i32) -> String {
    match family {
        libc::AF_UNIX => "unix".into(),
        libc::AF_INET => "inet (IPv4)".into(),
        libc::AF_INET6 => "inet6 (IPv6)".into(),
        libc::AF_NETLINK => "netlink".into(),
        libc::AF_PACKET => "packet".into(),
        libc::AF_VSOCK => "vsock".into(),
        libc::AF_BLUETOOTH => "bluetooth".into(),
        libc::AF_ALG => "alg".into(),
        f => format!("family-{f}"),
    }
}

fn type_name(ty: i32) -> String {
    match ty {
        libc::SOCK_STREAM => "stream".into(),
        libc::SOCK_DGRAM => "datagram".into(),
        libc::SOCK_SEQPACKET => "seqpacket".into(),
        libc::SOCK_RAW => "raw".into(),
        libc::SOCK_RDM => "rdm".into(),
        t => format!("type-{t}"),
    }
}

pub(super) fn dump_socket(ctx: &mut SocketCtx<'_>, sock: OwnedFd) -> Result<FileKind, DumpError> {
    let opt = |name: i32, label: &str| {
        getsockopt_int(&sock, libc::SOL_SOCKET, name)
            .map_err(|e| ctx.err(format!("socket: getsockopt {label}: {e}")))
    };
    let family = opt(libc::SO_DOMAIN, "SO_DOMAIN")?;
    let ty = opt(libc::SO_TYPE, "SO_TYPE")?;
    let protocol = opt(libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    let inet = family == libc::AF_INET || family == libc::AF_INET6;
    match (family, ty, protocol) {
        (_, libc::SOCK_STREAM, libc::IPPROTO_TCP) if inet => inet::dump_tcp(ctx, &sock, family),
        (_, libc::SOCK_DGRAM, libc::IPPROTO_UDP) if inet => inet::dump_udp(ctx, &sock, family),
        (libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET, _) => {
            unix::dump_unix(ctx, &sock, ty)
        }
        _ => Err(ctx.unsupported(format!(
            "{} {} socket (protocol {protocol})",
            family_name(family),
            type_name(ty)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_addresses_are_decoded() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(inet_address(&v4), Some(("127.0.0.1".into(), 8080)));
        let mut v6 = vec![0u8; 28];
        v6[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
        v6[23] = 1;
        assert_eq!(inet_address(&v6), Some(("::1".into(), 0)));
        assert_eq!(inet_address(&v6[..10]), None);
    }

    #[test]
    fn changed_options_are_those_set() {
        let a = fresh_socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let b = fresh_socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads one int from a live local.
        let r = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                4,
            )
        };
        assert_eq!(r, 0);
        let opts = changed_options(&a, &b, &[]);
        assert_eq!(
            opts,
            vec![SockOpt {
                name: "TCP_NODELAY".into(),
                value: 1
            }]
        );
        assert!(changed_options(&a, &b, &["TCP_NODELAY"]).is_empty());
    }
}
