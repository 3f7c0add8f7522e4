//! The process tree under the checkpointed process: every descendant,
//! frozen parent first, and the zombies among them.
//!
//! A frozen process cannot fork, so a process's children are read only
//! after it is frozen: the list is then final (a child may still exit
//! before it is frozen; it is then a zombie, recorded as one).

use std::collections::VecDeque;

use crate::image::Zombie;
use crate::sys::proc::Stat;

use super::freeze::{list_threads, FrozenProcess};
use super::{process, DumpError};

/// Every live process of the tree, frozen, in tree order (each after its
/// parent; the root first), and the tree's zombies.
pub struct FrozenTree {
    pub procs: Vec<FrozenProcess>,
    pub zombies: Vec<Zombie>,
}

impl FrozenTree {
    pub fn seize(root: i32) -> Result<Self, DumpError> {
        process::check_checkpointable(root)?;
        let mut tree = Self {
            procs: Vec::new(),
            zombies: Vec::new(),
        };
        let mut queue = VecDeque::from([root]);
        while let Some(pid) = queue.pop_front() {
            if pid != root {
                if let Some(z) = zombie(pid)? {
                    tree.zombies.push(z);
                    continue;
                }
                process::check_checkpointable(pid)?;
            }
            let frozen = match FrozenProcess::seize(pid) {
                Ok(f) => f,
                // Exited (and became a zombie) between the listing and now.
                Err(DumpError::NoSuchProcess { .. }) if pid != root => {
                    if let Some(z) = zombie(pid)? {
                        tree.zombies.push(z);
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            queue.extend(children(pid)?);
            tree.procs.push(frozen);
        }
        Ok(tree)
    }

    /// Resumes every process unchanged; the first error is returned.
    pub fn release(self) -> Result<(), DumpError> {
        let mut first = Ok(());
        for p in self.procs {
            let r = p.release();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Ends every process, children before their parents.
    pub fn kill(self) -> Result<(), DumpError> {
        let mut first = Ok(());
        for p in self.procs.into_iter().rev() {
            let r = p.kill();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

/// The children of every thread of `pid`.
pub(super) fn children(pid: i32) -> Result<Vec<i32>, DumpError> {
    let mut all = Vec::new();
    for tid in list_threads(pid)? {
        let path = format!("/proc/{pid}/task/{tid}/children");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            // A thread that was already exiting when the process was frozen
            // (so not frozen itself) may be gone now; its children, if it
            // had any, went to another thread of the process.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(DumpError::Proc { pid, path, source }),
        };
        all.extend(
            text.split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok()),
        );
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

/// The zombie `pid`, if it is one: its ids and exit status.
fn zombie(pid: i32) -> Result<Option<Zombie>, DumpError> {
    let path = format!("/proc/{pid}/stat");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        // Reaped meanwhile: no longer part of the tree.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DumpError::Proc { pid, path, source }),
    };
    let state = text
        .rfind(')')
        .and_then(|i| text[i + 1..].split_whitespace().next());
    if state != Some("Z") {
        return Ok(None);
    }
    let stat = Stat::parse(&text).ok_or_else(|| DumpError::State {
        pid,
        reason: format!("cannot parse {path}"),
    })?;
    let field = |n| {
        stat.field_i64(n).ok_or_else(|| DumpError::State {
            pid,
            reason: format!("cannot parse field {n} of {path}"),
        })
    };
    Ok(Some(Zombie {
        pid,
        ppid: field(4)? as i32,
        pgid: field(5)? as i32,
        sid: field(6)? as i32,
        exit_status: field(52)? as i32,
    }))
}
