//! `start`: opens exec.fifo for reading, which lets the waiting init exec
//! the container's program; then the poststart hooks.

use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::error::{Error, Result};
use super::hooks;
use super::state::{Container, Status};

pub fn start(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(Error::WrongState(
                "cannot start a container that has stopped".into(),
            ))
        }
        _ => {
            return Err(Error::WrongState(
                "cannot start an already running container".into(),
            ))
        }
    }
    let fifo = c.fifo();
    let fd = open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))?;
    // SAFETY: `open` just returned FD, which nothing else owns.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(100u16))
            .map_err(|e| Error::sys("poll exec.fifo", e))?;
        if n > 0 {
            let mut buf = [0u8; 1];
            match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf) {
                Ok(1) => break,
                Ok(_) | Err(nix::Error::EAGAIN) => {}
                Err(e) => return Err(Error::sys("read exec.fifo", e)),
            }
        }
        if !c.init_alive() {
            return Err(Error::WrongState(format!(
                "container init (pid {}) exited before start",
                c.saved.pid
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fs::remove_file(&fifo).map_err(|e| Error::io("remove", &fifo, e))?;
    let spec = c.spec()?;
    if let Some(h) = &spec.hooks {
        if let Err(e) = hooks::run_all("poststart", &h.poststart, &c.oci_state()) {
            tracing::warn!(id, "{e}");
        }
    }
    Ok(())
}
