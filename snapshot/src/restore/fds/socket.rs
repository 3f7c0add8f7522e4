//! Sockets: created inside the target, given their options, then bound,
//! set listening or connected as they were. TCP and UDP are here; unix
//! sockets, which come in connected pairs, are in `unix.rs`.

use crate::image::{option_by_name, InetProtocol, InetSocket, InetState, SockOpt};
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;
use super::state_err;

/// Backlog of a restored listening socket when the image has none (an
/// image from before the backlog was recorded).
pub const LISTEN_BACKLOG: u32 = 4096;

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

/// Sets each recorded option on the target's socket `s`. Buffer sizes go
/// through the `*FORCE` variants (the restorer is privileged) with half
/// the recorded value, since the kernel doubles what it is given.
pub(super) fn apply_options(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    s: u64,
    options: &[SockOpt],
) -> Result<(), RestoreError> {
    for o in options {
        let (mut level, mut opt) = option_by_name(&o.name).ok_or_else(|| {
            state_err(
                remote.pid(),
                format!("{what}: unknown socket option {} in the image", o.name),
            )
        })?;
        let mut value = o.value;
        if level == libc::SOL_SOCKET && opt == libc::SO_RCVBUF {
            (level, opt, value) = (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value / 2);
        } else if level == libc::SOL_SOCKET && opt == libc::SO_SNDBUF {
            (level, opt, value) = (libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, value / 2);
        }
        setsockopt_int(
            remote,
            scratch,
            &format!("{what}: {}", o.name),
            s,
            level,
            opt,
            value,
        )?;
    }
    Ok(())
}

pub(super) fn setsockopt_int(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    s: u64,
    level: i32,
    opt: i32,
    value: i32,
) -> Result<(), RestoreError> {
    let v = scratch.put(remote, &value.to_ne_bytes())?;
    let r = remote.syscall(
        &format!("{what}: setsockopt"),
        libc::SYS_setsockopt,
        &[s, level as u64, opt as u64, v, 4],
    );
    scratch.reset();
    r?;
    Ok(())
}

/// Puts the description's O_NONBLOCK on a socket created blocking.
pub(super) fn set_flags(
    remote: &mut dyn Remote,
    what: &str,
    s: u64,
    flags: i32,
) -> Result<(), RestoreError> {
    if flags & libc::O_NONBLOCK != 0 {
        remote.syscall(
            &format!("{what}: fcntl(F_SETFL)"),
            libc::SYS_fcntl,
            &[s, libc::F_SETFL as u64, libc::O_NONBLOCK as u64],
        )?;
    }
    Ok(())
}

/// `bind`, `connect` and the like: a call taking (socket, address, length).
pub(super) fn with_address(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    nr: i64,
    s: u64,
    addr: &[u8],
) -> Result<(), RestoreError> {
    let a = scratch.put(remote, addr)?;
    let r = remote.syscall(what, nr, &[s, a, addr.len() as u64]);
    scratch.reset();
    r?;
    Ok(())
}

/// A TCP or UDP socket as it was: fresh, bound, listening, connected
/// (UDP) or closed (TCP, as a connection reset by its peer).
pub(super) fn inet_socket(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    fd: i32,
    flags: i32,
    sock: &InetSocket,
) -> Result<u64, RestoreError> {
    let pid = remote.pid();
    let what = format!("fd {fd}: {}", sock.describe());
    let ty = match sock.protocol {
        InetProtocol::Tcp => libc::SOCK_STREAM,
        InetProtocol::Udp => libc::SOCK_DGRAM,
    };
    let s = remote.syscall(
        &format!("{what}: socket"),
        libc::SYS_socket,
        &[sock.family as u64, ty as u64, 0],
    )?;
    apply_options(remote, scratch, &what, s, &sock.options)?;
    let addr = |a: &Option<crate::image::InetAddr>, which: &str| {
        let a = a
            .as_ref()
            .ok_or_else(|| state_err(pid, format!("{what}: the image has no {which} address")))?;
        sockaddr(sock.family, &a.address, a.port)
            .map_err(|e| state_err(pid, format!("{what}: {e}")))
    };
    let bind = |remote: &mut dyn Remote, scratch: &mut Scratch, local: &[u8]| {
        with_address(
            remote,
            scratch,
            &format!("{what}: bind"),
            libc::SYS_bind,
            s,
            local,
        )
    };
    match sock.state {
        InetState::Unbound => {}
        InetState::Bound => bind(remote, scratch, &addr(&sock.local, "local")?)?,
        InetState::Listening => {
            bind(remote, scratch, &addr(&sock.local, "local")?)?;
            let backlog = if sock.backlog == 0 {
                LISTEN_BACKLOG
            } else {
                sock.backlog
            };
            remote.syscall(
                &format!("{what}: listen"),
                libc::SYS_listen,
                &[s, backlog as u64],
            )?;
        }
        InetState::Connected => {
            if sock.local.is_some() {
                bind(remote, scratch, &addr(&sock.local, "local")?)?;
            }
            let peer = addr(&sock.peer, "peer")?;
            with_address(
                remote,
                scratch,
                &format!("{what}: connect"),
                libc::SYS_connect,
                s,
                &peer,
            )?;
        }
        InetState::Closed => reset_connection(remote, scratch, &what, sock.family, s)?,
    }
    set_flags(remote, &what, s, flags)?;
    Ok(s)
}

/// Makes `s` a TCP connection reset by its peer: connected to a listener
/// on loopback made for the purpose, whose accepted end is then closed
/// with `SO_LINGER` 0 (which sends a RST). Then waits (1 s at most) for
/// the reset to arrive.
fn reset_connection(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    family: i32,
    s: u64,
) -> Result<(), RestoreError> {
    let what = format!("{what}: closed connection");
    let loopback = if family == libc::AF_INET6 {
        "::1"
    } else {
        "127.0.0.1"
    };
    let l = remote.syscall(
        &format!("{what}: socket"),
        libc::SYS_socket,
        &[family as u64, libc::SOCK_STREAM as u64, 0],
    )?;
    let any_port = sockaddr(family, loopback, 0).map_err(|e| state_err(remote.pid(), e))?;
    with_address(
        remote,
        scratch,
        &format!("{what}: bind {loopback}"),
        libc::SYS_bind,
        l,
        &any_port,
    )?;
    remote.syscall(&format!("{what}: listen"), libc::SYS_listen, &[l, 1])?;
    let addr = scratch.alloc(any_port.len());
    let len = scratch.put(remote, &(any_port.len() as u32).to_ne_bytes())?;
    remote.syscall(
        &format!("{what}: getsockname"),
        libc::SYS_getsockname,
        &[l, addr, len],
    )?;
    remote.syscall(
        &format!("{what}: connect"),
        libc::SYS_connect,
        &[s, addr, any_port.len() as u64],
    )?;
    scratch.reset();
    let a = remote.syscall(&format!("{what}: accept"), libc::SYS_accept4, &[l, 0, 0, 0])?;
    let linger = [1i32.to_ne_bytes(), 0i32.to_ne_bytes()].concat();
    let lp = scratch.put(remote, &linger)?;
    let r = remote.syscall(
        &format!("{what}: SO_LINGER"),
        libc::SYS_setsockopt,
        &[a, libc::SOL_SOCKET as u64, libc::SO_LINGER as u64, lp, 8],
    );
    scratch.reset();
    r?;
    remote.syscall(&format!("{what}: close"), libc::SYS_close, &[a])?;
    remote.syscall(&format!("{what}: close"), libc::SYS_close, &[l])?;
    // struct pollfd { int fd; short events; short revents; }
    let mut pfd = (s as i32).to_ne_bytes().to_vec();
    pfd.extend_from_slice(&libc::POLLIN.to_ne_bytes());
    pfd.extend_from_slice(&0i16.to_ne_bytes());
    let p = scratch.put(remote, &pfd)?;
    let r = remote.syscall(&format!("{what}: poll"), libc::SYS_poll, &[p, 1, 1000]);
    scratch.reset();
    if r? == 0 {
        return Err(state_err(
            remote.pid(),
            format!("{what}: the reset did not arrive within 1 s"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::InetAddr;
    use crate::sys::remote::fake::FakeRemote;

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

    #[test]
    fn a_listener_gets_options_before_bind_and_its_backlog() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x1000, 0x10000);
        let sock = InetSocket {
            family: libc::AF_INET6,
            protocol: InetProtocol::Tcp,
            state: InetState::Listening,
            local: Some(InetAddr {
                address: "::1".into(),
                port: 5000,
            }),
            peer: None,
            backlog: 7,
            options: vec![
                SockOpt {
                    name: "IPV6_V6ONLY".into(),
                    value: 1,
                },
                SockOpt {
                    name: "SO_RCVBUF".into(),
                    value: 65536,
                },
            ],
        };
        inet_socket(&mut fake, &mut scratch, 3, libc::O_NONBLOCK, &sock).unwrap();
        let nrs: Vec<i64> = fake.calls.iter().map(|c| c.1).collect();
        assert_eq!(
            nrs,
            vec![
                libc::SYS_socket,
                libc::SYS_setsockopt,
                libc::SYS_setsockopt,
                libc::SYS_bind,
                libc::SYS_listen,
                libc::SYS_fcntl
            ]
        );
        assert_eq!(fake.calls[2].2[2], libc::SO_RCVBUFFORCE as u64);
        assert_eq!(fake.calls[4].2[1], 7);
        let bad = InetSocket {
            options: vec![SockOpt {
                name: "SO_NONSENSE".into(),
                value: 1,
            }],
            ..sock
        };
        let err = inet_socket(&mut fake, &mut scratch, 3, 0, &bad).unwrap_err();
        assert!(err.to_string().contains("SO_NONSENSE"), "{err}");
    }
}
