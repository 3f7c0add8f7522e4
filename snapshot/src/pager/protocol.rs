//! The control channel between a restore and its pager: JSON messages on
//! a `SOCK_SEQPACKET` unix socket pair (one message per packet), with the
//! uffd and the pidfd of an attached process passed as `SCM_RIGHTS`. The
//! sequence is in docs/pager.md.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where the pager reads the snapshot from: what the restore opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An image directory.
    Dir { path: PathBuf },
    /// A named snapshot in a store, with an optional remote tier.
    Store {
        dir: PathBuf,
        name: String,
        remote: Option<String>,
    },
}

/// The first message: what to serve and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub source: Source,
    /// The snapshot root the restore opened; the pager refuses another.
    pub root: String,
    /// Push the saved working set and record a new one.
    pub working_set: bool,
    /// How long after the resume the recording window stays open (a
    /// SIGUSR1 to the pager closes it earlier).
    pub window_ms: u64,
    /// Threads that push the working set and stream the rest.
    pub stream_threads: usize,
    /// A chunk read that takes longer is a failure (the process is killed).
    pub read_timeout_ms: u64,
    /// Where to write the pager's figures (JSON), if anywhere.
    pub stats: Option<PathBuf>,
}

/// A registered range, with the advice a fork needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRange {
    pub start: u64,
    pub end: u64,
    pub wipeonfork: bool,
    pub dontfork: bool,
}

/// A process of the tree to serve; its uffd and pidfd come with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    /// Its place in the manifest's process list.
    pub index: usize,
    /// Its pid in the restorer's namespace (for messages).
    pub pid: i32,
    pub ranges: Vec<AttachRange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToPager {
    Start(Start),
    Attach(Attach),
    /// Every process runs: start the window (and streaming).
    Resumed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromPager {
    /// The working set of process `index` is in.
    Ready {
        index: usize,
        pushed_chunks: usize,
        pushed_bytes: u64,
    },
    /// The pager cannot serve the restore; it has killed what it attached.
    Failed { reason: String },
}

/// Largest message accepted.
const MAX_MSG: usize = 1 << 20;
/// Most fds one message carries.
const MAX_FDS: usize = 4;

/// One end of the control channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair (close-on-exec).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let mut fds = [0i32; 2];
        // SAFETY: socketpair writes two new fds into the live array.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both are fresh descriptors returned by the kernel.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn from_fd(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Bounds how long `recv` waits (`None`: forever).
    pub fn set_recv_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        let tv = match t {
            Some(t) => libc::timeval {
                tv_sec: t.as_secs() as libc::time_t,
                tv_usec: t.subsec_micros() as libc::suseconds_t,
            },
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
        };
        // SAFETY: setsockopt reads a live timeval of the given size.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Sends one message with `fds`.
    pub fn send<T: Serialize>(&self, msg: &T, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        assert!(fds.len() <= MAX_FDS, "at most {MAX_FDS} fds per message");
        let body = serde_json::to_vec(msg).expect("a control message serializes");
        let mut iov = libc::iovec {
            iov_base: body.as_ptr() as *mut libc::c_void,
            iov_len: body.len(),
        };
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut cbuf = [0u64; 8];
        // SAFETY: an all-zero msghdr is valid; the fields are set below to
        // live buffers (iov, cbuf) that outlive the sendmsg call.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        if !raw.is_empty() {
            let data_len = (raw.len() * size_of::<i32>()) as u32;
            // SAFETY: CMSG_SPACE is arithmetic on a length.
            let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
            assert!(space <= size_of_val(&cbuf));
            hdr.msg_control = cbuf.as_mut_ptr().cast();
            hdr.msg_controllen = space;
            // SAFETY: msg_control points at `space` bytes of cbuf (8-byte
            // aligned), room for one header and the fds; CMSG_FIRSTHDR and
            // CMSG_DATA stay inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&hdr);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(data_len) as usize;
                std::ptr::copy_nonoverlapping(
                    raw.as_ptr(),
                    libc::CMSG_DATA(c).cast::<i32>(),
                    raw.len(),
                );
            }
        }
        loop {
            // SAFETY: hdr points at live buffers (see above).
            let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one message and the fds that came with it; `None` when the
    /// other end is closed.
    pub fn recv<T: DeserializeOwned>(&self) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
        let mut body = vec![0u8; MAX_MSG];
        let mut iov = libc::iovec {
            iov_base: body.as_mut_ptr().cast(),
            iov_len: body.len(),
        };
        let mut cbuf = [0u64; 8];
        // SAFETY: an all-zero msghdr is valid; its buffers are set below.
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = &mut iov;
        hdr.msg_iovlen = 1;
        hdr.msg_control = cbuf.as_mut_ptr().cast();
        hdr.msg_controllen = size_of_val(&cbuf);
        let n = loop {
            // SAFETY: hdr points at live buffers (body, cbuf) for the call;
            // received fds are close-on-exec.
            let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut hdr, libc::MSG_CMSG_CLOEXEC) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let mut fds = Vec::new();
        if hdr.msg_controllen > 0 {
            // SAFETY: the kernel filled msg_control with msg_controllen
            // bytes of cmsgs; the CMSG macros walk within them, and each
            // SCM_RIGHTS payload holds fds now owned by this process.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&hdr);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                        let data = libc::CMSG_DATA(c).cast::<i32>();
                        let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / size_of::<i32>();
                        for i in 0..count {
                            fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                        }
                    }
                    c = libc::CMSG_NXTHDR(&hdr, c);
                }
            }
        }
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        if hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "control message truncated",
            ));
        }
        let msg = serde_json::from_slice(&body[..n]).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad control message: {e}"),
            )
        })?;
        Ok(Some((msg, fds)))
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn messages_and_fds_cross_and_eof_is_none() {
        let (a, b) = Channel::pair().unwrap();
        let attach = ToPager::Attach(Attach {
            index: 2,
            pid: 77,
            ranges: vec![AttachRange {
                start: 0x1000,
                end: 0x3000,
                wipeonfork: true,
                dontfork: false,
            }],
        });
        let mut p = [0i32; 2];
        // SAFETY: pipe2 writes two new fds into the live array.
        assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh descriptors from the kernel, owned from here on.
        let (mut r, mut w) = unsafe {
            (
                std::fs::File::from_raw_fd(p[0]),
                std::fs::File::from_raw_fd(p[1]),
            )
        };
        a.send(&attach, &[w.as_fd(), r.as_fd()]).unwrap();
        let (got, fds) = b.recv::<ToPager>().unwrap().unwrap();
        assert_eq!(got, attach);
        assert_eq!(fds.len(), 2);
        // The received fd is the same pipe.
        let mut w2 = std::fs::File::from(fds.into_iter().next().unwrap());
        w2.write_all(b"hi").unwrap();
        drop(w2);
        w.flush().unwrap();
        drop(w);
        let mut buf = [0u8; 2];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        b.send(
            &FromPager::Failed {
                reason: "chunk x".into(),
            },
            &[],
        )
        .unwrap();
        assert_eq!(
            a.recv::<FromPager>().unwrap().unwrap().0,
            FromPager::Failed {
                reason: "chunk x".into()
            }
        );
        drop(b);
        assert!(a.recv::<FromPager>().unwrap().is_none());
    }
}
