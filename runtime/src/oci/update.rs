//! `update`: new resource limits for a container's cgroups (runc's
//! `update --resources FILE|-` as containerd's shim calls it, and the
//! single-value flags).

use std::path::Path;

use super::error::{Error, Result};
use super::spec::Resources;
use super::state::{Container, Status};

pub fn update(root: &Path, id: &str, res: &Resources) -> Result<()> {
    let c = Container::load(root, id)?;
    if c.status() == Status::Stopped {
        return Err(Error::WrongState("container not running".into()));
    }
    c.saved.cgroup.apply(res)
}
