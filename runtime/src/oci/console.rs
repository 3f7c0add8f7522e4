//! `process.terminal`: the container gets a new pty whose master goes to the
//! caller over `--console-socket` (SCM_RIGHTS), as runc does.

use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use super::error::{Error, Result};
use super::spec::ConsoleSize;

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, Winsize);

/// Connects to the caller's console socket (before the root switch hides it).
pub fn connect(path: &Path) -> Result<UnixStream> {
    UnixStream::connect(path).map_err(|e| Error::io("connect to the console socket", path, e))
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::sys(format!("console: {what}"), e)
}

/// Opens a pty in the container's devpts, sends the master over SOCK, and
/// makes the slave this process's controlling terminal and stdio.
pub fn setup(sock: &UnixStream, size: Option<ConsoleSize>) -> Result<()> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("open /dev/ptmx"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(sys("ptsname"))?;
    if let Some(s) = size {
        let ws = Winsize {
            ws_row: s.height,
            ws_col: s.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one Winsize from the pointer, which lives
        // for the call.
        unsafe { tiocswinsz(master.as_raw_fd(), &ws) }.map_err(sys("set the window size"))?;
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let payload = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(sock.as_raw_fd(), &payload, &cmsg, MsgFlags::empty(), None)
        .map_err(sys("send the pty master over the console socket"))?;
    drop(master);
    let slave =
        open(name.as_str(), OFlag::O_RDWR, Mode::empty()).map_err(sys("open the pty slave"))?;
    for fd in 0..3 {
        nix::unistd::dup2(slave, fd).map_err(sys("dup the pty slave onto stdio"))?;
    }
    // SAFETY: TIOCSCTTY takes an int argument, no memory.
    unsafe { tiocsctty(0, 0) }.map_err(sys("make the pty the controlling terminal"))?;
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}
