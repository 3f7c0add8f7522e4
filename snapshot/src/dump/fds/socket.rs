//! Sockets, looked at through a duplicate of the target's fd.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::{FileKind, SocketOptions};

/// Backlog of restored listening sockets. The original backlog is not
/// readable through /proc or getsockopt; the kernel caps this value at
/// `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

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

pub(super) fn dump_socket(sock: OwnedFd) -> Result<FileKind, String> {
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
