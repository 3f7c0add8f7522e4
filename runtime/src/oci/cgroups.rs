//! Cgroups: the container's directory in every v1 hierarchy the host mounts
//! (and the v2 one beside them in hybrid mode), or in the unified hierarchy
//! when /sys/fs/cgroup is cgroup2; placing pids, resource limits, the
//! freezer, listing pids and removal.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::spec::Resources;

/// One hierarchy's directory for the container.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Dir {
    /// The hierarchy's name: its mount point's last component (`memory`,
    /// `cpu`, `unified`, or `` for a pure v2 host).
    pub hierarchy: String,
    pub controllers: Vec<String>,
    pub v2: bool,
    pub path: PathBuf,
}

/// The container's cgroups (kept in state.json).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Cgroup {
    pub dirs: Vec<Dir>,
}

/// A cgroup filesystem mount: its mount point, the cgroup path of its root,
/// its controllers, and whether it is cgroup2.
struct Hierarchy {
    mountpoint: PathBuf,
    root: String,
    controllers: Vec<String>,
    v2: bool,
}

fn mounted_hierarchies() -> Result<Vec<Hierarchy>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse_mountinfo(&text))
}

/// The cgroup mounts of a mountinfo text.
fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let controllers = if v2 {
            Vec::new()
        } else {
            r[2].split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "nosuid"))
                .filter(|o| !o.starts_with("release_agent") && !o.starts_with("clone_children"))
                .map(str::to_string)
                .collect()
        };
        out.push(Hierarchy {
            mountpoint: PathBuf::from(l[4]),
            root: l[3].to_string(),
            controllers,
            v2,
        });
    }
    out
}

/// This process's cgroup path in the hierarchy with these controllers.
fn own_path(h: &Hierarchy) -> String {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = if h.v2 {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if matches {
            return path.to_string();
        }
    }
    "/".to_string()
}

fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| Error::io("write cgroup file", path, e))
}

impl Cgroup {
    /// Works out the container's cgroup directories for `cgroups_path`
    /// (absolute: from each hierarchy's root; relative: from this process's
    /// own cgroup, as runc), without creating them.
    pub fn resolve(cgroups_path: &str) -> Result<Self> {
        Ok(Self::resolve_in(
            mounted_hierarchies()?,
            cgroups_path,
            own_path,
        ))
    }

    fn resolve_in(
        hiers: Vec<Hierarchy>,
        cgroups_path: &str,
        own_path: impl Fn(&Hierarchy) -> String,
    ) -> Self {
        let unified_host = hiers
            .iter()
            .any(|h| h.v2 && h.mountpoint == Path::new("/sys/fs/cgroup"));
        let mut dirs = Vec::new();
        for h in hiers {
            if unified_host && !h.v2 {
                continue;
            }
            let rel = if cgroups_path.starts_with('/') {
                cgroups_path.trim_start_matches('/').to_string()
            } else {
                let own = own_path(&h);
                let own = own.strip_prefix(h.root.as_str()).unwrap_or(&own);
                format!("{}/{}", own.trim_matches('/'), cgroups_path)
                    .trim_start_matches('/')
                    .to_string()
            };
            let hierarchy = h
                .mountpoint
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            dirs.push(Dir {
                hierarchy: if unified_host {
                    String::new()
                } else {
                    hierarchy
                },
                controllers: h.controllers.clone(),
                v2: h.v2,
                path: h.mountpoint.join(rel),
            });
        }
        Cgroup { dirs }
    }

    fn dir_with(&self, controller: &str) -> Option<&Dir> {
        self.dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
    }

    fn unified(&self) -> Option<&Dir> {
        self.dirs.iter().find(|d| d.v2)
    }

    /// Whether the limits go to the v2 files (a pure v2 host).
    fn is_v2_host(&self) -> bool {
        self.dirs.len() == 1 && self.dirs[0].v2
    }

    /// Creates the directories (cpuset ones get their parent's cpus and mems).
    pub fn create(&self) -> Result<()> {
        for d in &self.dirs {
            fs::create_dir_all(&d.path).map_err(|e| Error::io("create cgroup dir", &d.path, e))?;
            if d.controllers.iter().any(|c| c == "cpuset") {
                init_cpuset(&d.path)?;
            }
        }
        if self.is_v2_host() {
            enable_v2_controllers(&self.dirs[0].path);
        }
        Ok(())
    }

    /// Moves PID into every directory.
    pub fn add(&self, pid: i32) -> Result<()> {
        for d in &self.dirs {
            write(&d.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Writes the resource limits of `linux.resources`.
    pub fn apply(&self, res: &Resources) -> Result<()> {
        if self.is_v2_host() {
            return self.apply_v2(res);
        }
        if let (Some(m), Some(d)) = (&res.memory, self.dir_with("memory")) {
            if let Some(l) = m.limit {
                write(&d.path.join("memory.limit_in_bytes"), &l.to_string())?;
            }
            if let Some(r) = m.reservation {
                write(&d.path.join("memory.soft_limit_in_bytes"), &r.to_string())?;
            }
            if let Some(s) = m.swap {
                let f = d.path.join("memory.memsw.limit_in_bytes");
                if f.exists() {
                    write(&f, &s.to_string())?;
                } else {
                    tracing::warn!(
                        "no swap accounting on this host: linux.resources.memory.swap ignored"
                    );
                }
            }
        }
        if let (Some(c), Some(d)) = (&res.cpu, self.dir_with("cpu")) {
            if let Some(s) = c.shares {
                write(&d.path.join("cpu.shares"), &s.to_string())?;
            }
            if let Some(p) = c.period {
                write(&d.path.join("cpu.cfs_period_us"), &p.to_string())?;
            }
            if let Some(q) = c.quota {
                write(&d.path.join("cpu.cfs_quota_us"), &q.to_string())?;
            }
        }
        if let (Some(c), Some(d)) = (&res.cpu, self.dir_with("cpuset")) {
            if let Some(cpus) = &c.cpus {
                write(&d.path.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = &c.mems {
                write(&d.path.join("cpuset.mems"), mems)?;
            }
        }
        if let (Some(p), Some(d)) = (&res.pids, self.dir_with("pids")) {
            write(&d.path.join("pids.max"), &pids_max(p.limit))?;
        }
        if let Some(d) = self.dir_with("devices") {
            if !res.devices.is_empty() {
                apply_v1_devices(&d.path, res)?;
            }
        }
        Ok(())
    }

    fn apply_v2(&self, res: &Resources) -> Result<()> {
        let dir = &self.dirs[0].path;
        if let Some(m) = &res.memory {
            if let Some(l) = m.limit {
                write(&dir.join("memory.max"), &max_or(l))?;
                if let Some(s) = m.swap {
                    let swap = if s < 0 { -1 } else { (s - l).max(0) };
                    write(&dir.join("memory.swap.max"), &max_or(swap))?;
                }
            }
            if let Some(r) = m.reservation {
                write(&dir.join("memory.low"), &r.to_string())?;
            }
        }
        if let Some(c) = &res.cpu {
            if let Some(s) = c.shares {
                // runc's mapping of shares [2, 262144] onto weight [1, 10000].
                let w = 1 + (s.clamp(2, 262_144) - 2) * 9999 / 262_142;
                write(&dir.join("cpu.weight"), &w.to_string())?;
            }
            if c.quota.is_some() || c.period.is_some() {
                let q = c
                    .quota
                    .filter(|q| *q > 0)
                    .map_or("max".into(), |q| q.to_string());
                let p = c.period.unwrap_or(100_000);
                write(&dir.join("cpu.max"), &format!("{q} {p}"))?;
            }
            if let Some(cpus) = &c.cpus {
                write(&dir.join("cpuset.cpus"), cpus)?;
            }
            if let Some(mems) = &c.mems {
                write(&dir.join("cpuset.mems"), mems)?;
            }
        }
        if let Some(p) = &res.pids {
            write(&dir.join("pids.max"), &pids_max(p.limit))?;
        }
        if res.devices.iter().any(|d| !d.allow) {
            tracing::warn!("device rules on cgroup v2 need eBPF: linux.resources.devices ignored");
        }
        Ok(())
    }

    /// The pids in the container's cgroup.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let Some(d) = self
            .dir_with("pids")
            .or_else(|| self.dir_with("freezer"))
            .or_else(|| self.dirs.first())
        else {
            return Ok(Vec::new());
        };
        let path = d.path.join("cgroup.procs");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", path, e)),
        };
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    fn freezer(&self) -> Option<(PathBuf, bool)> {
        if let Some(d) = self.dir_with("freezer") {
            return Some((d.path.clone(), false));
        }
        self.unified()
            .filter(|d| d.path.join("cgroup.freeze").exists() || self.is_v2_host())
            .map(|d| (d.path.clone(), true))
    }

    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Some((p, false)) => {
                fs::read_to_string(p.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
            }
            Some((p, true)) => {
                fs::read_to_string(p.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
            None => false,
        }
    }

    /// Freezes or thaws every process, waiting until the kernel says done.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let Some((dir, v2)) = self.freezer() else {
            return Err(Error::NotImplemented(
                "pause: this host has neither the v1 freezer nor cgroup v2".into(),
            ));
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = if v2 {
                write(&dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
                let events = fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
                let want = if frozen { "frozen 1" } else { "frozen 0" };
                events.lines().any(|l| l.trim() == want)
            } else {
                let want = if frozen { "FROZEN" } else { "THAWED" };
                write(&dir.join("freezer.state"), want)?;
                fs::read_to_string(dir.join("freezer.state")).is_ok_and(|s| s.trim() == want)
            };
            if done {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::WrongState(format!(
                    "cgroup {} did not become {}",
                    dir.display(),
                    if frozen { "frozen" } else { "thawed" }
                )));
            }
            sleep(Duration::from_millis(5));
        }
    }

    /// Removes the directories (retrying while the last processes leave).
    pub fn remove(&self) -> Result<()> {
        for d in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match fs::remove_dir(&d.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e)
                        if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) =>
                    {
                        sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(Error::io("remove cgroup dir", &d.path, e)),
                }
            }
        }
        Ok(())
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

fn pids_max(limit: i64) -> String {
    if limit <= 0 {
        "max".into()
    } else {
        limit.to_string()
    }
}

/// A new v1 cpuset cgroup is empty: copy cpus and mems down from the first
/// ancestor that has them.
fn init_cpuset(dir: &Path) -> Result<()> {
    let mut chain = Vec::new();
    let mut cur = dir.to_path_buf();
    while cur.join("cpuset.cpus").exists() {
        chain.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    chain.reverse();
    for pair in chain.windows(2) {
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let child = pair[1].join(f);
            if fs::read_to_string(&child)
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                let v = fs::read_to_string(pair[0].join(f)).unwrap_or_default();
                write(&child, v.trim())?;
            }
        }
    }
    Ok(())
}

/// Enables the controllers snaprun sets in every ancestor of DIR (best effort).
fn enable_v2_controllers(dir: &Path) {
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    for a in ancestors {
        if !a.starts_with("/sys/fs/cgroup") {
            continue;
        }
        let avail = fs::read_to_string(a.join("cgroup.controllers")).unwrap_or_default();
        for c in ["cpu", "cpuset", "memory", "pids"] {
            if avail.split_whitespace().any(|x| x == c) {
                let _ = fs::write(a.join("cgroup.subtree_control"), format!("+{c}"));
            }
        }
    }
}

/// The default devices a container may always use, as v1 rules.
const DEFAULT_ALLOW: &[&str] = &[
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pty slaves
    "c *:* m",
    "b *:* m",
];

fn apply_v1_devices(dir: &Path, res: &Resources) -> Result<()> {
    for (i, rule) in res.devices.iter().enumerate() {
        let kind = rule.kind.as_deref().unwrap_or("a");
        if !matches!(kind, "a" | "b" | "c") {
            return Err(Error::invalid(
                format!("linux.resources.devices[{i}].type"),
                format!("unknown device type {kind:?}"),
            ));
        }
        let num = |n: Option<i64>| n.filter(|n| *n >= 0).map_or("*".into(), |n| n.to_string());
        let access = rule.access.as_deref().unwrap_or("rwm");
        let line = if kind == "a" && rule.major.is_none() && rule.minor.is_none() {
            "a".to_string()
        } else {
            format!("{kind} {}:{} {access}", num(rule.major), num(rule.minor))
        };
        let file = if rule.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        write(&dir.join(file), &line)?;
    }
    for rule in DEFAULT_ALLOW {
        write(&dir.join("devices.allow"), rule)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::spec::{Cpu, Memory, Pids};

    const HYBRID: &str = "\
25 1 252:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "\
25 1 252:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
";

    fn own(h: &Hierarchy) -> String {
        if h.v2 {
            "/user.slice".into()
        } else {
            "/mine".into()
        }
    }

    #[test]
    fn hybrid_host_gets_a_dir_per_hierarchy() {
        let hiers = parse_mountinfo(HYBRID);
        assert_eq!(hiers.len(), 3);
        assert_eq!(hiers[1].controllers, vec!["cpu", "cpuacct"]);
        let cg = Cgroup::resolve_in(hiers, "snaprun/c1", own);
        let paths: Vec<_> = cg.dirs.iter().map(|d| d.path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                PathBuf::from("/sys/fs/cgroup/memory/mine/snaprun/c1"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/mine/snaprun/c1"),
                PathBuf::from("/sys/fs/cgroup/unified/user.slice/snaprun/c1"),
            ]
        );
        assert!(!cg.is_v2_host());
        assert_eq!(cg.dir_with("cpuacct").unwrap().hierarchy, "cpu,cpuacct");
    }

    #[test]
    fn unified_host_gets_one_dir_and_absolute_paths_start_at_the_root() {
        let cg = Cgroup::resolve_in(parse_mountinfo(UNIFIED), "/default/c2", own);
        assert_eq!(cg.dirs.len(), 1);
        assert!(cg.is_v2_host());
        assert_eq!(cg.dirs[0].path, PathBuf::from("/sys/fs/cgroup/default/c2"));
        assert_eq!(cg.dirs[0].hierarchy, "");
    }

    #[test]
    fn v2_limits_are_written_in_v2_terms() {
        let tmp = tempfile::tempdir().unwrap();
        let cg = Cgroup {
            dirs: vec![Dir {
                hierarchy: String::new(),
                controllers: Vec::new(),
                v2: true,
                path: tmp.path().to_path_buf(),
            }],
        };
        let res = Resources {
            memory: Some(Memory {
                limit: Some(1 << 26),
                reservation: Some(1 << 20),
                swap: Some(1 << 27),
            }),
            cpu: Some(Cpu {
                shares: Some(1024),
                quota: Some(50_000),
                period: Some(100_000),
                ..Default::default()
            }),
            pids: Some(Pids { limit: 0 }),
            ..Default::default()
        };
        cg.apply(&res).unwrap();
        let read = |f: &str| fs::read_to_string(tmp.path().join(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "67108864");
        assert_eq!(read("memory.low"), "1048576");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "max");
    }
}
