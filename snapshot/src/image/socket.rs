//! Sockets in the manifest: internet (TCP/UDP) and unix sockets. See the
//! socket rows of docs/snapshot-format.md.

use serde::{Deserialize, Serialize};

use super::PageRun;

/// An integer socket option whose value differed, at checkpoint, from the
/// one a fresh socket of the same kind has (so it was set by the program).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SockOpt {
    /// The option's C name, e.g. `SO_REUSEADDR`, `TCP_NODELAY`.
    pub name: String,
    /// The value `getsockopt` returned (for `SO_RCVBUF`/`SO_SNDBUF`, the
    /// doubled value the kernel reports).
    pub value: i32,
}

/// The integer options snaprun carries over: (name, level, option). Each
/// is recorded only when its value differs from a fresh socket's.
pub const SOCKET_OPTIONS: &[(&str, i32, i32)] = &[
    ("SO_REUSEADDR", libc::SOL_SOCKET, libc::SO_REUSEADDR),
    ("SO_REUSEPORT", libc::SOL_SOCKET, libc::SO_REUSEPORT),
    ("SO_KEEPALIVE", libc::SOL_SOCKET, libc::SO_KEEPALIVE),
    ("SO_BROADCAST", libc::SOL_SOCKET, libc::SO_BROADCAST),
    ("SO_OOBINLINE", libc::SOL_SOCKET, libc::SO_OOBINLINE),
    ("SO_PRIORITY", libc::SOL_SOCKET, libc::SO_PRIORITY),
    ("SO_RCVLOWAT", libc::SOL_SOCKET, libc::SO_RCVLOWAT),
    ("SO_PASSCRED", libc::SOL_SOCKET, libc::SO_PASSCRED),
    ("SO_RCVBUF", libc::SOL_SOCKET, libc::SO_RCVBUF),
    ("SO_SNDBUF", libc::SOL_SOCKET, libc::SO_SNDBUF),
    ("IP_TOS", libc::IPPROTO_IP, libc::IP_TOS),
    ("IP_TTL", libc::IPPROTO_IP, libc::IP_TTL),
    ("IP_FREEBIND", libc::IPPROTO_IP, libc::IP_FREEBIND),
    ("IPV6_V6ONLY", libc::IPPROTO_IPV6, libc::IPV6_V6ONLY),
    (
        "IPV6_UNICAST_HOPS",
        libc::IPPROTO_IPV6,
        libc::IPV6_UNICAST_HOPS,
    ),
    ("TCP_NODELAY", libc::IPPROTO_TCP, libc::TCP_NODELAY),
    ("TCP_CORK", libc::IPPROTO_TCP, libc::TCP_CORK),
    ("TCP_KEEPIDLE", libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
    ("TCP_KEEPINTVL", libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
    ("TCP_KEEPCNT", libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
    (
        "TCP_USER_TIMEOUT",
        libc::IPPROTO_TCP,
        libc::TCP_USER_TIMEOUT,
    ),
    (
        "TCP_DEFER_ACCEPT",
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
    ),
];

/// The (level, option) of an option name from [`SOCKET_OPTIONS`].
pub fn option_by_name(name: &str) -> Option<(i32, i32)> {
    SOCKET_OPTIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, l, o)| (l, o))
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InetProtocol {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InetState {
    /// Never bound: restored as a fresh socket.
    Unbound,
    /// Bound to `local`, not listening or connected.
    Bound,
    /// TCP in LISTEN.
    Listening,
    /// UDP connected to `peer`.
    Connected,
    /// A TCP connection that was open (restored only with
    /// `checkpoint --tcp-close`) or had already ended: restored as a
    /// connection reset by its peer.
    Closed,
}

/// An IP address (as text) and port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InetAddr {
    pub address: String,
    pub port: u16,
}

impl std::fmt::Display for InetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.address.contains(':') {
            write!(f, "[{}]:{}", self.address, self.port)
        } else {
            write!(f, "{}:{}", self.address, self.port)
        }
    }
}

/// An IPv4 or IPv6 TCP or UDP socket.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InetSocket {
    /// `AF_INET` or `AF_INET6`.
    pub family: i32,
    pub protocol: InetProtocol,
    pub state: InetState,
    /// The bound address; absent when unbound. For a closed connection,
    /// the address it had (informative: it is not bound again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<InetAddr>,
    /// The connected UDP peer; for a closed TCP connection, the peer it
    /// had (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<InetAddr>,
    /// `listen` backlog (listening sockets only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backlog: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SockOpt>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnixType {
    Stream,
    Dgram,
    Seqpacket,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnixState {
    Unbound,
    Bound,
    Listening,
    /// Connected to the socket whose inode is `peer`.
    Connected,
}

/// A unix socket address.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UnixName {
    /// A path in the filesystem (absolute).
    Path(String),
    /// An abstract name, without its leading NUL, in hex.
    Abstract(String),
}

/// The socket file of a unix socket bound to a path.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SocketFile {
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One unix socket. The two ends of a connection are two entries that
/// name each other's inode in `peer`, so they can be placed in different
/// processes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnixSocket {
    /// The socket's inode (`socket:[INO]`).
    pub inode: u64,
    pub sock_type: UnixType,
    pub state: UnixState,
    /// Its own address (an accepted socket has its listener's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<UnixName>,
    /// Mode and owner of the socket file, for a name that is a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<SocketFile>,
    /// The inode of the connected peer; absent when not connected or when
    /// the peer was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<u64>,
    /// The peer's address, as `getpeername` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_name: Option<UnixName>,
    /// `listen` backlog (listening sockets only).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backlog: u32,
    /// `shutdown` bits: 1 = no more receiving, 2 = no more sending.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub shutdown: u8,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<SockOpt>,
    /// Bytes waiting to be read, stored like pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PageRun>,
    /// For datagram and seqpacket sockets: the length of each queued
    /// message, in order; `data` holds them end to end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<u32>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}

impl UnixName {
    /// As `ss` shows it: the path, or `@` and the abstract name.
    pub fn display(&self) -> String {
        match self {
            UnixName::Path(p) => p.clone(),
            UnixName::Abstract(hex) => {
                let bytes = crate::hex::decode(hex).unwrap_or_default();
                format!("@{}", String::from_utf8_lossy(&bytes))
            }
        }
    }
}

impl InetSocket {
    pub fn describe(&self) -> String {
        let proto = match self.protocol {
            InetProtocol::Tcp => "tcp",
            InetProtocol::Udp => "udp",
        };
        let v6 = if self.family == libc::AF_INET6 {
            "6"
        } else {
            ""
        };
        let local = self
            .local
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unbound".into());
        let state = match self.state {
            InetState::Unbound => String::new(),
            InetState::Bound => " bound".into(),
            InetState::Listening => " listen".into(),
            InetState::Connected | InetState::Closed => format!(
                " {} to {}",
                if self.state == InetState::Closed {
                    "closed, was connected"
                } else {
                    "connected"
                },
                self.peer
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_default()
            ),
        };
        format!("{proto}{v6} {local}{state}")
    }
}

impl UnixSocket {
    /// Type, inode and name: "unix stream socket:[INO] /run/x.sock".
    pub fn label(&self) -> String {
        let ty = match self.sock_type {
            UnixType::Stream => "stream",
            UnixType::Dgram => "dgram",
            UnixType::Seqpacket => "seqpacket",
        };
        let mut s = format!("unix {ty} socket:[{}]", self.inode);
        if let Some(n) = &self.name {
            s.push_str(&format!(" {}", n.display()));
        }
        s
    }

    /// [`Self::label`], state, peer and queue.
    pub fn describe(&self) -> String {
        let mut s = self.label();
        if self.state == UnixState::Listening {
            s.push_str(" listen");
        }
        if let Some(p) = self.peer {
            s.push_str(&format!(" peer socket:[{p}]"));
        }
        if let Some(d) = &self.data {
            s.push_str(&format!(" ({} bytes queued)", d.len));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_names_map_to_their_numbers() {
        for (name, level, opt) in SOCKET_OPTIONS {
            assert_eq!(option_by_name(name), Some((*level, *opt)));
        }
        assert_eq!(
            option_by_name("TCP_NODELAY"),
            Some((libc::IPPROTO_TCP, libc::TCP_NODELAY))
        );
        assert_eq!(option_by_name("SO_NONSENSE"), None);
    }

    #[test]
    fn sockets_read_back_as_written() {
        let u = UnixSocket {
            inode: 7,
            sock_type: UnixType::Seqpacket,
            state: UnixState::Connected,
            name: Some(UnixName::Abstract("6162".into())),
            file: None,
            peer: Some(8),
            peer_name: None,
            backlog: 0,
            shutdown: 2,
            options: vec![],
            data: None,
            messages: vec![3, 0, 5],
        };
        let json = serde_json::to_string(&crate::image::FileKind::UnixSocket(u.clone())).unwrap();
        assert!(json.contains("\"type\":\"unix_socket\""), "{json}");
        let back: crate::image::FileKind = serde_json::from_str(&json).unwrap();
        assert_eq!(back, crate::image::FileKind::UnixSocket(u));
    }
}
