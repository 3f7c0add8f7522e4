//! `pause` and `resume`: the cgroup freezer (v1 `freezer.state`, or v2
//! `cgroup.freeze`).

use std::path::Path;

use super::error::{Error, Result};
use super::state::{Container, Status};

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Running | Status::Created => c.saved.cgroup.set_frozen(true),
        Status::Paused => Err(Error::WrongState("container already paused".into())),
        _ => Err(Error::WrongState("container not running".into())),
    }
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Paused => c.saved.cgroup.set_frozen(false),
        _ => Err(Error::WrongState("container not paused".into())),
    }
}
