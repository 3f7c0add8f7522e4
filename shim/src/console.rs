//! Terminals: the shim listens on a console socket, passes its path to
//! `snaprun create|exec --console-socket`, and receives the pty master the
//! process opened (SCM_RIGHTS), as with runc.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tempfile::TempDir;

use crate::error::{Error, Result};

/// How long the shim waits for the runtime to send the master after the
/// create or exec command returned.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listening console socket in a private temp dir (short path: socket
/// names are limited to 108 bytes; the bundle's path may be longer).
pub struct ConsoleSocket {
    dir: TempDir,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("snaprun-pty")
            .tempdir()
            .map_err(|e| Error::io("create a console socket dir in", std::env::temp_dir(), e))?;
        let path = dir.path().join("pty.sock");
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io("bind the console socket", &path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("set the console socket non-blocking", &path, e))?;
        Ok(Self { dir, listener })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pty.sock")
    }

    /// Accepts the runtime's connection and receives the pty master.
    pub fn receive(&self) -> Result<Console> {
        let path = self.path();
        let deadline = Instant::now() + RECEIVE_TIMEOUT;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(Error::io(
                            "wait for the pty master on",
                            &path,
                            std::io::Error::from(std::io::ErrorKind::TimedOut),
                        ));
                    }
                    sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(Error::io("accept on the console socket", &path, e)),
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|e| Error::io("set the console stream blocking", &path, e))?;
        stream
            .set_read_timeout(Some(RECEIVE_TIMEOUT))
            .map_err(|e| Error::io("set a timeout on the console stream", &path, e))?;
        receive_fd(stream.as_raw_fd(), &path)
    }
}

fn receive_fd(sock: RawFd, path: &Path) -> Result<Console> {
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(|e| Error::io("receive the pty master on", path, e.into()))?;
    let cmsgs = msg
        .cmsgs()
        .map_err(|e| Error::io("read the control message on", path, e.into()))?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut it = fds.into_iter();
            if let Some(fd) = it.next() {
                for extra in it {
                    // SAFETY: each fd came with the message and is ours to close.
                    drop(unsafe { OwnedFd::from_raw_fd(extra) });
                }
                // SAFETY: the fd came with the message (SCM_RIGHTS) and
                // nothing else owns it.
                let master = unsafe { OwnedFd::from_raw_fd(fd) };
                return Ok(Console {
                    master: File::from(master),
                });
            }
        }
    }
    Err(Error::io(
        "receive the pty master on",
        path,
        std::io::Error::new(std::io::ErrorKind::InvalidData, "no fd in the message"),
    ))
}

/// A process's pty master.
pub struct Console {
    master: File,
}

impl Console {
    /// Another handle on the master (for a copy thread).
    pub fn dup(&self) -> Result<File> {
        self.master.try_clone().map_err(|e| Error::Sys {
            what: "dup the pty master".into(),
            source: e,
        })
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        let ws = libc::winsize {
            ws_row: u16::try_from(height).unwrap_or(u16::MAX),
            ws_col: u16::try_from(width).unwrap_or(u16::MAX),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives
        // for the call; the fd is the open master.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc != 0 {
            return Err(Error::last_os(format!(
                "set the terminal size to {width}x{height}"
            )));
        }
        Ok(())
    }
}
