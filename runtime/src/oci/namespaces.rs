//! Namespaces of `linux.namespaces`: clone flags for new ones, setns for
//! ones given by path, and the user namespace's id maps.

use std::fs;
use std::os::fd::AsFd;

use nix::sched::{setns, CloneFlags};

use super::error::{Error, Result};
use super::spec::{IdMapping, Namespace};

/// The runtime-spec namespace types and their clone flags.
pub const KINDS: &[(&str, CloneFlags)] = &[
    ("pid", CloneFlags::CLONE_NEWPID),
    ("network", CloneFlags::CLONE_NEWNET),
    ("mount", CloneFlags::CLONE_NEWNS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

/// The name of the namespace in /proc/PID/ns/.
pub fn proc_name(kind: &str) -> &'static str {
    match kind {
        "pid" => "pid",
        "network" => "net",
        "mount" => "mnt",
        "ipc" => "ipc",
        "uts" => "uts",
        "user" => "user",
        _ => "cgroup",
    }
}

pub fn flag(kind: &str) -> Option<CloneFlags> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f)
}

/// The namespaces as the container asks for them.
#[derive(Clone, Debug)]
pub struct Plan {
    /// New namespaces to create.
    pub new: CloneFlags,
    /// Existing ones to join: (type, path).
    pub join: Vec<(String, String)>,
}

impl Plan {
    /// Checks `linux.namespaces` (types known, none twice) and splits it.
    pub fn from_spec(list: &[Namespace]) -> Result<Self> {
        let mut plan = Plan {
            new: CloneFlags::empty(),
            join: Vec::new(),
        };
        let mut seen = Vec::new();
        for (i, ns) in list.iter().enumerate() {
            let field = format!("linux.namespaces[{i}].type");
            let Some(f) = flag(&ns.kind) else {
                return Err(Error::invalid(
                    field,
                    format!("unknown namespace type {:?}", ns.kind),
                ));
            };
            if seen.contains(&ns.kind) {
                return Err(Error::invalid(
                    field,
                    format!("namespace {:?} given twice", ns.kind),
                ));
            }
            seen.push(ns.kind.clone());
            match ns.path.as_deref().filter(|p| !p.is_empty()) {
                Some(p) => plan.join.push((ns.kind.clone(), p.to_string())),
                None => plan.new |= f,
            }
        }
        Ok(plan)
    }

    pub fn has(&self, kind: &str) -> bool {
        flag(kind).is_some_and(|f| self.new.contains(f)) || self.join.iter().any(|(k, _)| k == kind)
    }
}

/// Joins the namespace at PATH (of type KIND).
pub fn join(kind: &str, path: &str) -> Result<()> {
    let f = fs::File::open(path).map_err(|e| Error::io("open namespace", path, e))?;
    let flag = flag(kind).unwrap_or(CloneFlags::empty());
    setns(f.as_fd(), flag).map_err(|e| Error::sys(format!("setns {kind} namespace {path}"), e))
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.size))
        .collect()
}

/// Writes PID's uid and gid maps (from the parent, after clone).
pub fn write_id_maps(pid: i32, uids: &[IdMapping], gids: &[IdMapping]) -> Result<()> {
    let write = |file: &str, text: String| {
        let path = format!("/proc/{pid}/{file}");
        fs::write(&path, text).map_err(|e| Error::io("write", path, e))
    };
    if !uids.is_empty() {
        write("uid_map", map_text(uids))?;
    }
    if !gids.is_empty() {
        write("gid_map", map_text(gids))?;
    }
    Ok(())
}
