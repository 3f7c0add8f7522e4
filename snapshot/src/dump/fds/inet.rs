//! TCP and UDP sockets (IPv4 and IPv6): state, addresses and options.
//!
//! An open TCP connection cannot be carried over (its peer holds half of
//! it), so it is refused, naming both ends, unless `--tcp-close` asks for
//! it to come back closed. Datagrams queued on a UDP socket are refused
//! too: re-sending them at restore would change their source address.

use std::os::fd::{AsRawFd, OwnedFd};

use crate::image::{FileKind, InetAddr, InetProtocol, InetSocket, InetState};

use super::super::DumpError;
use super::socket::{changed_options, fresh_socket, inet_address, raw_address, SocketCtx};

/// `tcp_states.h`.
const TCP_ESTABLISHED: u8 = 1;
const TCP_CLOSE: u8 = 7;
const TCP_LISTEN: u8 = 10;

fn tcp_state_name(s: u8) -> &'static str {
    match s {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "unknown state",
    }
}

fn tcp_info(sock: &OwnedFd) -> std::io::Result<libc::tcp_info> {
    // SAFETY: tcp_info is plain data; all-zero is valid.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live struct.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(info)
}

fn address(sock: &OwnedFd, peer: bool) -> Option<InetAddr> {
    let raw = raw_address(sock, peer).ok()?;
    let (address, port) = inet_address(&raw)?;
    Some(InetAddr { address, port })
}

/// The bound address, or `None` for a socket never bound (port 0 on the
/// unspecified address).
fn bound_address(sock: &OwnedFd) -> Option<InetAddr> {
    address(sock, false).filter(|a| {
        let unspecified = a
            .address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
        a.port != 0 || !unspecified
    })
}

fn show(a: &Option<InetAddr>) -> String {
    a.as_ref()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "?".into())
}

pub(super) fn dump_tcp(
    ctx: &mut SocketCtx<'_>,
    sock: &OwnedFd,
    family: i32,
) -> Result<FileKind, DumpError> {
    let info = tcp_info(sock).map_err(|e| ctx.err(format!("tcp socket: TCP_INFO: {e}")))?;
    let local = bound_address(sock);
    let mut peer = None;
    let mut backlog = 0;
    // Receive and send buffers of a connection are tuned by the kernel as
    // it runs: only those of a socket that never carried traffic say what
    // the program set.
    let mut skip: &[&str] = &[];
    let state = match info.tcpi_state {
        TCP_LISTEN => {
            // For a listener the kernel reports the accept queue in
            // `unacked` and the backlog in `sacked`.
            let waiting = info.tcpi_unacked;
            if waiting > 0 && !ctx.tcp_close {
                return Err(ctx.err(format!(
                    "listening tcp socket {} has {waiting} connection(s) waiting to be accepted; \
                     they cannot be kept open (checkpoint with --tcp-close to drop them)",
                    show(&local)
                )));
            }
            backlog = info.tcpi_sacked;
            InetState::Listening
        }
        TCP_CLOSE if info.tcpi_segs_in == 0 && info.tcpi_segs_out == 0 => {
            if local.is_some() {
                InetState::Bound
            } else {
                InetState::Unbound
            }
        }
        // A connection that already ended (reset, or a failed connect).
        TCP_CLOSE => {
            skip = &["SO_RCVBUF", "SO_SNDBUF"];
            InetState::Closed
        }
        s => {
            peer = address(sock, true);
            if !ctx.tcp_close {
                let what = if s == TCP_ESTABLISHED {
                    "established".to_string()
                } else {
                    format!("open ({})", tcp_state_name(s))
                };
                return Err(ctx.err(format!(
                    "tcp connection {} -> {} is {what}; an open connection cannot be kept \
                     (checkpoint with --tcp-close to restore it closed)",
                    show(&local),
                    show(&peer)
                )));
            }
            tracing::info!(
                pid = ctx.pid,
                fd = ctx.fd,
                local = %show(&local),
                peer = %show(&peer),
                state = tcp_state_name(s),
                "tcp connection kept as closed (--tcp-close)"
            );
            skip = &["SO_RCVBUF", "SO_SNDBUF"];
            InetState::Closed
        }
    };
    let fresh = fresh_socket(family, libc::SOCK_STREAM, 0)
        .map_err(|e| ctx.err(format!("a tcp socket to compare options with: {e}")))?;
    Ok(FileKind::InetSocket(InetSocket {
        family,
        protocol: InetProtocol::Tcp,
        state,
        local,
        peer,
        backlog,
        options: changed_options(sock, &fresh, skip),
    }))
}

pub(super) fn dump_udp(
    ctx: &mut SocketCtx<'_>,
    sock: &OwnedFd,
    family: i32,
) -> Result<FileKind, DumpError> {
    let local = bound_address(sock);
    let peer = address(sock, true);
    // FIONREAD is the length of the next datagram. (A recv with MSG_PEEK
    // would also consume a pending ICMP error.)
    let next = super::fionread(sock).map_err(|e| ctx.err(format!("udp socket: FIONREAD: {e}")))?;
    if next > 0 {
        return Err(ctx.err(format!(
            "udp socket {} has queued datagrams (the next one of {next} bytes); snaprun does not \
             keep them, as re-sent datagrams would come from another address",
            show(&local)
        )));
    }
    let state = if peer.is_some() {
        InetState::Connected
    } else if local.is_some() {
        InetState::Bound
    } else {
        InetState::Unbound
    };
    let fresh = fresh_socket(family, libc::SOCK_DGRAM, 0)
        .map_err(|e| ctx.err(format!("a udp socket to compare options with: {e}")))?;
    Ok(FileKind::InetSocket(InetSocket {
        family,
        protocol: InetProtocol::Udp,
        state,
        local,
        peer,
        backlog: 0,
        options: changed_options(sock, &fresh, &[]),
    }))
}
