//! `kill`: a signal to the init, or with `--all` to every process in the
//! container's cgroup.

use std::path::Path;

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use super::error::{Error, Result};
use super::state::{Container, Status};

pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<()> {
    let c = Container::load(root, id)?;
    let status = c.status();
    let strays = all && !c.saved.cgroup.pids()?.is_empty();
    if status == Status::Stopped && !strays {
        return Err(Error::WrongState("container not running".into()));
    }
    signal(&c, sig, all)
}

/// Sends SIG (to every process with ALL); a frozen container is thawed
/// after a SIGKILL so that its processes can die.
pub fn signal(c: &Container, sig: Signal, all: bool) -> Result<()> {
    if all {
        for pid in c.saved.cgroup.pids()? {
            match send(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => return Err(Error::sys(format!("kill pid {pid} with {sig}"), e)),
            }
        }
    } else if c.init_alive() {
        send(Pid::from_raw(c.saved.pid), sig)
            .map_err(|e| Error::sys(format!("kill pid {} with {sig}", c.saved.pid), e))?;
    }
    if sig == Signal::SIGKILL && c.saved.cgroup.is_frozen() {
        c.saved.cgroup.set_frozen(false)?;
    }
    Ok(())
}
