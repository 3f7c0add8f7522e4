//! Sockets: created, given their options, bound and set listening inside
//! the target.

use crate::image::SocketOptions;
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;
use super::fd_err;

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
pub(super) fn listen_socket(
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

#[cfg(test)]
mod tests {
    use super::*;

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
