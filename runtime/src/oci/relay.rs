//! `run` in the foreground with `process.terminal` and no console socket
//! (runc's own tty handling): the runtime receives the pty master itself,
//! puts its own terminal in raw mode, copies bytes both ways, passes window
//! size changes on, forwards signals to the init, and returns its exit code.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use nix::pty::Winsize;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{Error, Result};

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, Winsize);

/// Accepts the init's connection on LISTENER and receives the pty master.
pub fn recv_master(listener: &UnixListener) -> Result<OwnedFd> {
    let (conn, _) = listener
        .accept()
        .map_err(|e| Error::io("accept on", "the console socket", e))?;
    let mut buf = [0u8; 256];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(|e| Error::sys("receive the pty master", e))?;
    for c in msg
        .cmsgs()
        .map_err(|e| Error::sys("read the console message", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this fd for us; nothing
                // else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    Err(Error::Init(
        "the console socket carried no pty master".into(),
    ))
}

/// Our terminal in raw mode, restored on drop.
struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(stdin.as_fd()) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// Copies our terminal's window size to the pty.
fn copy_winsize(master: BorrowedFd) {
    let mut ws = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one Winsize into WS, which lives for the call.
    if unsafe { tiocgwinsz(0, &mut ws) }.is_ok() {
        // SAFETY: TIOCSWINSZ reads one Winsize from WS.
        let _ = unsafe { tiocswinsz(master.as_raw_fd(), &ws) };
    }
}

fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}

/// The signals `run`/`exec` forward to the container's process (and
/// SIGCHLD, to see it exit). The container's processes reset their mask
/// before their program starts, so blocking these early is harmless.
pub fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// Relays between our stdio and MASTER until PID (our child) exits; its
/// exit code (128+N for signal N).
pub fn relay(master: OwnedFd, pid: i32) -> Result<i32> {
    let set = forwarded_signals();
    set.thread_block()
        .map_err(|e| Error::sys("block signals", e))?;
    let sfd =
        SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(|e| Error::sys("signalfd", e))?;
    let _raw = RawMode::enter();
    copy_winsize(master.as_fd());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut stdin_open = true;
    let mut master_open = true;
    let mut buf = [0u8; 8192];
    loop {
        if let Some(code) = exited(pid)? {
            // Whatever the program wrote last is still in the pty.
            drain(&master, stdout.as_fd(), &mut buf);
            return Ok(code);
        }
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let none = PollFlags::empty();
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(
                master.as_fd(),
                if master_open { PollFlags::POLLIN } else { none },
            ),
            PollFd::new(
                stdin.as_fd(),
                if stdin_open { PollFlags::POLLIN } else { none },
            ),
        ];
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::sys("poll the terminal", e)),
        }
        let ready = |f: &PollFd| {
            f.revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
            })
        };
        let (sig_ready, master_ready, stdin_ready) =
            (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
        if sig_ready {
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGCHLD) => {}
                    Ok(Signal::SIGWINCH) => copy_winsize(master.as_fd()),
                    Ok(sig) => {
                        let _ = kill(Pid::from_raw(pid), sig);
                    }
                    Err(_) => {}
                }
            }
        }
        if master_ready {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => master_open = false,
                Ok(n) => write_all(stdout.as_fd(), &buf[..n]),
                Err(_) => {}
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => write_all(master.as_fd(), &buf[..n]),
            }
        }
    }
}

fn exited(pid: i32) -> Result<Option<i32>> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, c)) => Ok(Some(c)),
        Ok(WaitStatus::Signaled(_, s, _)) => Ok(Some(128 + s as i32)),
        Ok(_) => Ok(None),
        Err(e) => Err(Error::sys(format!("wait for pid {pid}"), e)),
    }
}

/// Copies what is left in the pty without blocking.
fn drain(master: &OwnedFd, out: BorrowedFd, buf: &mut [u8]) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0) {
            return;
        }
        match nix::unistd::read(master.as_raw_fd(), buf) {
            Ok(n) if n > 0 => write_all(out, &buf[..n]),
            _ => return,
        }
    }
}
