//! `delete`: removes a stopped container (a created one is killed first, a
//! running or paused one only with `--force`), running the poststop hooks.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::error::{Error, Result};
use super::hooks;
use super::kill::signal;
use super::state::{Container, Status};

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let c = match Container::load(root, id) {
        // runc: --force on a container that is gone (or half made) succeeds.
        Err(Error::NotFound(_)) if force => {
            let dir = root.join(id);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| Error::io("remove the state dir", &dir, e))?;
            }
            return Ok(());
        }
        r => r?,
    };
    match c.status() {
        Status::Stopped => {}
        Status::Created => kill_all(&c)?,
        _ if force => kill_all(&c)?,
        s => {
            return Err(Error::WrongState(format!(
                "cannot delete container {id} that is not stopped: {s}"
            )))
        }
    }
    destroy(&c)
}

/// SIGKILLs every process and waits until they are gone.
pub fn kill_all(c: &Container) -> Result<()> {
    signal(c, Signal::SIGKILL, true)?;
    if c.init_alive() {
        signal(c, Signal::SIGKILL, false)?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Reap the init when it is our child (after `run`).
        let _ = waitpid(Pid::from_raw(c.saved.pid), Some(WaitPidFlag::WNOHANG));
        let left = c.saved.cgroup.pids()?;
        let alive: Vec<i32> = left
            .into_iter()
            .filter(|p| super::proc::state_and_start(*p).is_some_and(|(s, _)| s != 'Z'))
            .collect();
        if alive.is_empty() && !c.init_alive() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::WrongState(format!(
                "processes {alive:?} of container {} did not die",
                c.id()
            )));
        }
        sleep(Duration::from_millis(5));
    }
}

/// Poststop hooks, then the cgroups and the state dir go.
pub fn destroy(c: &Container) -> Result<()> {
    if let Ok(spec) = c.spec() {
        if let Some(h) = &spec.hooks {
            if let Err(e) = hooks::run_all("poststop", &h.poststop, &c.oci_state()) {
                tracing::warn!(id = c.id(), "{e}");
            }
        }
    }
    c.saved.cgroup.remove()?;
    fs::remove_dir_all(&c.dir).map_err(|e| Error::io("remove the state dir", &c.dir, e))
}
