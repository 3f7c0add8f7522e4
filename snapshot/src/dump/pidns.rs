//! Ids as the tree sees them in its own PID namespace (a container's),
//! instead of as the dumper sees them: with
//! `CheckpointOptions::own_pid_ns`, every pid, tid, ppid, pgid and sid of
//! the finished manifest is rewritten to its value at the root's level of
//! `NSpid`/`NSpgid`/`NSsid` in `/proc/ID/status`. A restore into a new PID
//! namespace (a container's) then gives every task the id it had there, as
//! glibc's cached tids need. An id from outside that namespace (the root's
//! parent, a group or session led from outside) becomes 0, as the kernel
//! shows it inside.

use std::collections::HashMap;

use crate::image::Manifest;

use super::DumpError;

/// The values of a `NS...:` line of a status file, outermost first.
fn ns_field(status: &str, field: &str) -> Vec<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn status_of(path: &str, pid: i32) -> Result<String, DumpError> {
    std::fs::read_to_string(path).map_err(|source| DumpError::Proc {
        pid,
        path: path.to_string(),
        source,
    })
}

/// Rewrites the ids of `m` (made with the dumper's ids) to the ids of the
/// root's PID namespace. Refuses a task in a namespace nested below it.
pub fn to_own_ids(m: &mut Manifest) -> Result<(), DumpError> {
    let root = m.processes[0].pid;
    let root_status = status_of(&format!("/proc/{root}/status"), root)?;
    let level = ns_field(&root_status, "NSpid:").len().max(1) - 1;
    // Every task's id at that level, and each process's group and session.
    let mut ids: HashMap<i32, i32> = HashMap::new();
    let mut groups: HashMap<i32, (i32, i32)> = HashMap::new();
    let mut tasks: Vec<(i32, i32)> = Vec::new();
    for p in &m.processes {
        tasks.extend(p.threads.iter().map(|t| (p.pid, t.tid)));
    }
    tasks.extend(m.zombies.iter().map(|z| (z.pid, z.pid)));
    for (pid, tid) in tasks {
        let path = format!("/proc/{pid}/task/{tid}/status");
        let status = status_of(&path, pid)?;
        let nspid = ns_field(&status, "NSpid:");
        if nspid.len() != level + 1 {
            return Err(DumpError::UnsupportedProcess {
                pid,
                what: format!(
                    "a task in another PID namespace than the tree's root (NSpid {nspid:?} of tid {tid})"
                ),
            });
        }
        ids.insert(tid, nspid[level]);
        if pid == tid {
            let at = |f: &str| ns_field(&status, f).get(level).copied().unwrap_or(0);
            groups.insert(pid, (at("NSpgid:"), at("NSsid:")));
        }
    }
    let own = |id: i32| ids.get(&id).copied().unwrap_or(0);
    for p in &mut m.processes {
        let (pgid, sid) = groups.get(&p.pid).copied().unwrap_or((0, 0));
        p.ppid = own(p.ppid);
        p.pgid = pgid;
        p.sid = sid;
        for t in &mut p.threads {
            t.tid = own(t.tid);
        }
        p.pid = own(p.pid);
        for f in &mut p.files {
            if let Some(s) = &mut f.shared {
                s.pid = own(s.pid);
            }
        }
    }
    for z in &mut m.zombies {
        let (pgid, sid) = groups.get(&z.pid).copied().unwrap_or((0, 0));
        z.ppid = own(z.ppid);
        z.pgid = pgid;
        z.sid = sid;
        z.pid = own(z.pid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_fields_outermost_first() {
        let status = "Name:\tsh\nNSpid:\t4321\t1\nNSpgid:\t4321\t1\nNSsid:\t4321\t1\n";
        assert_eq!(ns_field(status, "NSpid:"), vec![4321, 1]);
        assert_eq!(ns_field(status, "NSsid:"), vec![4321, 1]);
        assert!(ns_field(status, "NStgid:").is_empty());
    }
}
