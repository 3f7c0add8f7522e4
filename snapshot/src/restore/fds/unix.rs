//! Unix sockets, made inside the target. The two ends of a connection are
//! made at once: through the restored listener (`connect` + `accept`, so
//! both ends keep their addresses) when the connection came from a
//! listener of the process, otherwise with `socketpair`. The end whose turn
//! has not come waits, above every fd number still to be placed, like the
//! other end of a pipe. Queued bytes and datagrams are sent again from the
//! peer.

use std::collections::{HashMap, HashSet};

use crate::image::{FileKind, Image, ProcessImage, UnixName, UnixSocket, UnixState, UnixType};
use crate::sys::remote::{Remote, Scratch};

use super::super::RestoreError;
use super::socket::{apply_options, set_flags, setsockopt_int, with_address};
use super::state_err;
use super::unix_name::{bind_name, unix_sockaddr};

/// The longest message that fits the scratch area in one piece.
const MAX_MESSAGE: usize = 240 * 1024;

/// The unix sockets of one process while its fds are restored.
pub(super) struct UnixSockets<'a> {
    /// Every unix socket of the process, with its description's flags.
    socks: HashMap<u64, (&'a UnixSocket, i32)>,
    /// The first fd number of each, for messages.
    fds: HashMap<u64, i32>,
    /// Sockets made before their turn (target fds above `high`).
    pending: HashMap<u64, u64>,
    /// Sockets already at their fd numbers.
    placed: HashMap<u64, u64>,
    /// Sockets being made (a socket connected one way makes its peer
    /// first).
    creating: HashSet<u64>,
    /// The lowest fd number above every fd to be placed.
    high: i32,
    /// Unix sockets of the processes of the tree that come after this one
    /// (by inode, with their description's flags).
    later: HashMap<u64, (&'a UnixSocket, i32)>,
    /// Ends made here for a later process of the tree, to be taken from
    /// here: (inode, target fd).
    made_for_later: Vec<(u64, u64)>,
}

fn sock_type(t: UnixType) -> i32 {
    match t {
        UnixType::Stream => libc::SOCK_STREAM,
        UnixType::Dgram => libc::SOCK_DGRAM,
        UnixType::Seqpacket => libc::SOCK_SEQPACKET,
    }
}

impl<'a> UnixSockets<'a> {
    pub fn new(image: &'a Image, p: &'a ProcessImage, high: i32) -> Self {
        let later = image
            .manifest
            .processes
            .iter()
            .skip_while(|q| q.pid != p.pid)
            .skip(1)
            .flat_map(|q| q.files.iter())
            .filter(|f| f.shared.is_none())
            .filter_map(|f| match &f.kind {
                FileKind::UnixSocket(s) => Some((s.inode, (s, f.flags as i32))),
                _ => None,
            })
            .collect();
        // Descriptions shared with an earlier process are taken from it,
        // never made here.
        let socks: HashMap<u64, (&UnixSocket, i32)> = p
            .files
            .iter()
            .filter(|f| f.shared.is_none())
            .filter_map(|f| match &f.kind {
                FileKind::UnixSocket(s) => Some((s.inode, (s, f.flags as i32))),
                _ => None,
            })
            .collect();
        let fds = p
            .files
            .iter()
            .filter_map(|f| match &f.kind {
                FileKind::UnixSocket(s) => {
                    let fd = p.fds.iter().find(|d| d.file == f.id)?.fd;
                    Some((s.inode, fd))
                }
                _ => None,
            })
            .collect();
        Self {
            socks,
            fds,
            pending: HashMap::new(),
            placed: HashMap::new(),
            creating: HashSet::new(),
            high,
            later,
            made_for_later: Vec::new(),
        }
    }

    /// The ends made here for later processes of the tree: (inode, fd).
    pub fn take_made_for_later(&mut self) -> Vec<(u64, u64)> {
        std::mem::take(&mut self.made_for_later)
    }

    /// "fd N: unix ... socket:[INO] ..." for messages.
    fn label(&self, s: &UnixSocket) -> String {
        match self.fds.get(&s.inode) {
            Some(fd) => format!("fd {fd}: {}", s.describe()),
            None => s.describe(),
        }
    }

    /// Records where the socket `inode` was placed.
    pub fn placed(&mut self, inode: u64, fd: i32) {
        self.placed.insert(inode, fd as u64);
    }

    /// Closes the sockets made early that no fd took (none, for an image
    /// whose connections are whole).
    pub fn close_pending(&mut self, remote: &mut dyn Remote) -> Result<(), RestoreError> {
        for (_, fd) in self.pending.drain() {
            remote.syscall("close", libc::SYS_close, &[fd])?;
        }
        Ok(())
    }

    /// The target fd of socket `inode`, made now if it was not made early.
    pub fn open(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        inode: u64,
    ) -> Result<u64, RestoreError> {
        if let Some(fd) = self.pending.remove(&inode) {
            return Ok(fd);
        }
        self.create(remote, scratch, image, inode)
    }

    /// The target fd of socket `inode` for use by another socket (a
    /// listener to connect to): where it was placed, or made early.
    fn fd_of(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        inode: u64,
    ) -> Result<u64, RestoreError> {
        if let Some(&fd) = self.placed.get(&inode).or(self.pending.get(&inode)) {
            return Ok(fd);
        }
        let fd = self.create(remote, scratch, image, inode)?;
        let fd = self.lift(remote, fd)?;
        self.pending.insert(inode, fd);
        Ok(fd)
    }

    fn lift(&self, remote: &mut dyn Remote, fd: u64) -> Result<u64, RestoreError> {
        if fd as i32 >= self.high {
            return Ok(fd);
        }
        let moved = remote.syscall(
            "unix socket: F_DUPFD",
            libc::SYS_fcntl,
            &[fd, libc::F_DUPFD as u64, self.high as u64],
        )?;
        remote.syscall("close", libc::SYS_close, &[fd])?;
        Ok(moved)
    }

    fn get(&self, pid: i32, inode: u64) -> Result<(&'a UnixSocket, i32), RestoreError> {
        self.socks
            .get(&inode)
            .copied()
            .ok_or_else(|| state_err(pid, format!("the image has no unix socket:[{inode}]")))
    }

    fn create(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        inode: u64,
    ) -> Result<u64, RestoreError> {
        let (s, flags) = self.get(remote.pid(), inode)?;
        let what = self.label(s);
        if !self.creating.insert(inode) {
            return Err(state_err(
                remote.pid(),
                format!("{what}: datagram sockets connected one way in a circle are not supported"),
            ));
        }
        let fd = self.create_inner(remote, scratch, image, s, &what);
        self.creating.remove(&inode);
        let fd = fd?;
        set_flags(remote, &what, fd, flags)?;
        Ok(fd)
    }

    fn create_inner(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        s: &'a UnixSocket,
        what: &str,
    ) -> Result<u64, RestoreError> {
        let peer = s.peer.and_then(|p| self.socks.get(&p).copied());
        let fd = match (s.state, peer) {
            (UnixState::Connected, Some((ps, _))) if ps.inode == s.inode => {
                // A datagram socket connected to itself.
                let fd = self.single(remote, scratch, s)?;
                let name = s.name.as_ref().ok_or_else(|| {
                    state_err(
                        remote.pid(),
                        format!("{what}: connected to itself without a name"),
                    )
                })?;
                self.connect(remote, scratch, what, fd, name)?;
                fd
            }
            (UnixState::Connected, Some((ps, pflags))) if ps.peer == Some(s.inode) => {
                let (mine, theirs) = self.pair(remote, scratch, image, s, ps)?;
                set_flags(remote, &self.label(ps), theirs, pflags)?;
                let theirs = self.lift(remote, theirs)?;
                self.pending.insert(ps.inode, theirs);
                mine
            }
            (UnixState::Connected, Some((ps, _))) => {
                // A datagram socket connected one way, to a named socket
                // of the process.
                let fd = self.single(remote, scratch, s)?;
                self.fd_of(remote, scratch, image, ps.inode)?;
                let name = ps.name.as_ref().ok_or_else(|| {
                    state_err(
                        remote.pid(),
                        format!(
                            "{what}: its peer socket:[{}] has no name to connect to",
                            ps.inode
                        ),
                    )
                })?;
                self.connect(remote, scratch, what, fd, name)?;
                fd
            }
            (UnixState::Connected, None)
                if s.peer
                    .and_then(|p| self.later.get(&p))
                    .is_some_and(|(ps, _)| ps.peer == Some(s.inode)) =>
            {
                // The other end belongs to a later process of the tree: it
                // is made here with this one and taken from here.
                let (ps, pflags) = self.later[&s.peer.expect("checked above")];
                let (mine, theirs) = self.pair(remote, scratch, image, s, ps)?;
                set_flags(remote, &self.label(ps), theirs, pflags)?;
                let theirs = self.lift(remote, theirs)?;
                self.made_for_later.push((ps.inode, theirs));
                mine
            }
            (UnixState::Connected, None) if s.peer.is_some() => {
                // Connected to a named datagram socket outside the process.
                let fd = self.single(remote, scratch, s)?;
                let name = s.peer_name.as_ref().ok_or_else(|| {
                    state_err(
                        remote.pid(),
                        format!("{what}: its peer has no name to connect to"),
                    )
                })?;
                self.connect(remote, scratch, what, fd, name)?;
                fd
            }
            (UnixState::Connected, None) => self.orphan(remote, scratch, image, s)?,
            _ => self.single(remote, scratch, s)?,
        };
        Ok(fd)
    }

    /// A socket made on its own: options, its name, listening.
    fn single(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        s: &UnixSocket,
    ) -> Result<u64, RestoreError> {
        let what = self.label(s);
        let fd = self.socket(remote, scratch, s)?;
        // A connected stream socket's name may be its listener's, which
        // it does not own: only sockets that bound themselves are bound.
        let own_name = matches!(s.state, UnixState::Bound | UnixState::Listening)
            || s.sock_type == UnixType::Dgram;
        if let (Some(name), true) = (&s.name, own_name) {
            bind_name(remote, scratch, &what, fd, name, s)?;
        }
        if s.state == UnixState::Listening {
            let backlog = if s.backlog == 0 {
                super::socket::LISTEN_BACKLOG
            } else {
                s.backlog
            };
            remote.syscall(
                &format!("{what}: listen"),
                libc::SYS_listen,
                &[fd, backlog as u64],
            )?;
        }
        Ok(fd)
    }

    fn socket(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        s: &UnixSocket,
    ) -> Result<u64, RestoreError> {
        let what = self.label(s);
        let fd = remote.syscall(
            &format!("{what}: socket"),
            libc::SYS_socket,
            &[libc::AF_UNIX as u64, sock_type(s.sock_type) as u64, 0],
        )?;
        apply_options(remote, scratch, &what, fd, &s.options)?;
        Ok(fd)
    }

    fn connect(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        what: &str,
        fd: u64,
        name: &UnixName,
    ) -> Result<(), RestoreError> {
        let addr = unix_sockaddr(name).map_err(|e| state_err(remote.pid(), e))?;
        with_address(
            remote,
            scratch,
            &format!("{what}: connect to {}", name.display()),
            libc::SYS_connect,
            fd,
            &addr,
        )
    }

    /// Both ends of a connection, with their queues and shutdown state;
    /// returns (a's fd, b's fd).
    fn pair(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        a: &UnixSocket,
        b: &UnixSocket,
    ) -> Result<(u64, u64), RestoreError> {
        // The listener this connection was accepted from, if it is in the
        // process: the accepted end has its name.
        let listener = self.socks.values().map(|(l, _)| *l).find(|l| {
            l.state == UnixState::Listening
                && l.sock_type == a.sock_type
                && l.name.is_some()
                && (l.name == a.name || l.name == b.name)
        });
        let (fa, fb) = match listener {
            Some(l) => {
                let (accepted, client) = if l.name == a.name { (a, b) } else { (b, a) };
                let lfd = self.fd_of(remote, scratch, image, l.inode)?;
                let c = self.socket(remote, scratch, client)?;
                if let Some(name) = client.name.as_ref().filter(|n| Some(*n) != l.name.as_ref()) {
                    bind_name(remote, scratch, &self.label(client), c, name, client)?;
                }
                let name = l.name.as_ref().expect("checked above");
                self.connect(remote, scratch, &self.label(client), c, name)?;
                let acc = remote.syscall(
                    &format!("{}: accept", self.label(accepted)),
                    libc::SYS_accept4,
                    &[lfd, 0, 0, 0],
                )?;
                apply_options(
                    remote,
                    scratch,
                    &self.label(accepted),
                    acc,
                    &accepted.options,
                )?;
                if std::ptr::eq(accepted, a) {
                    (acc, c)
                } else {
                    (c, acc)
                }
            }
            None => {
                if a.name.is_some() || b.name.is_some() {
                    tracing::warn!(
                        pid = remote.pid(),
                        a = %a.describe(),
                        b = %b.describe(),
                        "unix connection restored as a socketpair: its names are lost"
                    );
                }
                let (x, y) = socketpair(remote, scratch, &self.label(a), a.sock_type)?;
                apply_options(remote, scratch, &self.label(a), x, &a.options)?;
                apply_options(remote, scratch, &self.label(b), y, &b.options)?;
                (x, y)
            }
        };
        let (la, lb) = (self.label(a), self.label(b));
        send_queue(remote, scratch, image, &la, fb, a)?;
        send_queue(remote, scratch, image, &lb, fa, b)?;
        shutdown(remote, &la, fa, a)?;
        shutdown(remote, &lb, fb, b)?;
        Ok((fa, fb))
    }

    /// A connected socket whose peer was closed: a socketpair whose other
    /// end sends the queued data, then is closed.
    fn orphan(
        &mut self,
        remote: &mut dyn Remote,
        scratch: &mut Scratch,
        image: &Image,
        s: &UnixSocket,
    ) -> Result<u64, RestoreError> {
        let what = self.label(s);
        let (x, y) = socketpair(remote, scratch, &what, s.sock_type)?;
        apply_options(remote, scratch, &what, x, &s.options)?;
        send_queue(remote, scratch, image, &what, y, s)?;
        remote.syscall("close", libc::SYS_close, &[y])?;
        shutdown(remote, &what, x, s)?;
        Ok(x)
    }
}

fn socketpair(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    ty: UnixType,
) -> Result<(u64, u64), RestoreError> {
    let sv = scratch.alloc(8);
    let r = remote.syscall(
        &format!("{what}: socketpair"),
        libc::SYS_socketpair,
        &[libc::AF_UNIX as u64, sock_type(ty) as u64, 0, sv],
    );
    let mut raw = [0u8; 8];
    let read = r.map(|_| ()).and_then(|()| remote.read_mem(sv, &mut raw));
    scratch.reset();
    read?;
    let x = i32::from_ne_bytes(raw[0..4].try_into().expect("4 bytes")) as u64;
    let y = i32::from_ne_bytes(raw[4..8].try_into().expect("4 bytes")) as u64;
    Ok((x, y))
}

/// Sends `to`'s queued bytes or datagrams from `from`, its peer. The
/// sender's buffer is raised for the time of it, so nothing blocks.
fn send_queue(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    image: &Image,
    what: &str,
    from: u64,
    to: &UnixSocket,
) -> Result<(), RestoreError> {
    let Some(run) = &to.data else {
        return Ok(());
    };
    let what = format!("{what}: queued data");
    let mut bytes = Vec::new();
    image.read_run(run, &mut bytes)?;
    let pieces: Vec<&[u8]> = if to.sock_type == UnixType::Stream {
        bytes.chunks(32 * 1024).collect()
    } else {
        let mut at = 0usize;
        let mut v = Vec::new();
        for &len in &to.messages {
            let len = len as usize;
            let msg = bytes.get(at..at + len).ok_or_else(|| RestoreError::State {
                pid: remote.pid(),
                reason: format!("{what}: message lengths exceed the data"),
            })?;
            if len > MAX_MESSAGE {
                return Err(state_err(
                    remote.pid(),
                    format!(
                        "{what}: a message of {len} bytes (at most {MAX_MESSAGE} are supported)"
                    ),
                ));
            }
            v.push(msg);
            at += len;
        }
        v
    };
    // The sender's buffer size now, to put back after.
    let val = scratch.alloc(4);
    let len = scratch.put(remote, &4u32.to_ne_bytes())?;
    remote.syscall(
        &format!("{what}: getsockopt SO_SNDBUF"),
        libc::SYS_getsockopt,
        &[
            from,
            libc::SOL_SOCKET as u64,
            libc::SO_SNDBUF as u64,
            val,
            len,
        ],
    )?;
    let mut raw = [0u8; 4];
    remote.read_mem(val, &mut raw)?;
    scratch.reset();
    let sndbuf = i32::from_ne_bytes(raw);
    let room = bytes.len().saturating_mul(2) + pieces.len() * 2048 + (1 << 20);
    let room = i32::try_from(room).unwrap_or(i32::MAX);
    setsockopt_int(
        remote,
        scratch,
        &what,
        from,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        room,
    )?;
    for piece in pieces {
        let at = scratch.put(remote, piece)?;
        let n = remote.syscall(
            &format!("{what}: send"),
            libc::SYS_sendto,
            &[
                from,
                at,
                piece.len() as u64,
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u64,
                0,
                0,
            ],
        );
        scratch.reset();
        if n? as usize != piece.len() {
            return Err(state_err(remote.pid(), format!("{what}: short send")));
        }
    }
    setsockopt_int(
        remote,
        scratch,
        &what,
        from,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        sndbuf / 2,
    )
}

fn shutdown(
    remote: &mut dyn Remote,
    what: &str,
    fd: u64,
    s: &UnixSocket,
) -> Result<(), RestoreError> {
    let how = match s.shutdown & 3 {
        0 => return Ok(()),
        1 => libc::SHUT_RD,
        2 => libc::SHUT_WR,
        _ => libc::SHUT_RDWR,
    };
    remote.syscall(
        &format!("{what}: shutdown"),
        libc::SYS_shutdown,
        &[fd, how as u64],
    )?;
    Ok(())
}
