//! `ps`: the container's processes (from its cgroup).

use std::path::Path;

use super::error::Result;
use super::proc;
use super::state::Container;

pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let c = Container::load(root, id)?;
    let mut pids = c.saved.cgroup.pids()?;
    pids.sort_unstable();
    Ok(pids)
}

/// A table of UID, PID, PPID and command line.
pub fn table(pids: &[i32]) -> String {
    let mut out = format!("{:<8} {:>7} {:>7} CMD\n", "UID", "PID", "PPID");
    for &pid in pids {
        if let Some((uid, ppid, cmd)) = proc::describe(pid) {
            out.push_str(&format!("{uid:<8} {pid:>7} {ppid:>7} {cmd}\n"));
        }
    }
    out
}
