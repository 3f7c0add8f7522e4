//! Process-wide attributes: ids, credentials, cwd/root, umask, rlimits,
//! personality, the mm fields and the executable.

use std::fs;

use crate::image::{Caps, Creds, MmFields, ProcessImage, Rlimit};
use crate::sys::proc::{parse_auxv, parse_ids, parse_status, Stat};

use super::memory::file_ref;
use super::DumpError;

pub const RLIMITS: &[(u32, &str)] = &[
    (0, "cpu"),
    (1, "fsize"),
    (2, "data"),
    (3, "stack"),
    (4, "core"),
    (5, "rss"),
    (6, "nproc"),
    (7, "nofile"),
    (8, "memlock"),
    (9, "as"),
    (10, "locks"),
    (11, "sigpending"),
    (12, "msgqueue"),
    (13, "nice"),
    (14, "rtprio"),
    (15, "rttime"),
];

fn read(pid: i32, name: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{name}");
    fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DumpError::NoSuchProcess { pid },
        _ => DumpError::Proc { pid, path, source },
    })
}

/// Refuses, before anything is touched, what this engine cannot do yet.
pub fn check_checkpointable(pid: i32) -> Result<(), DumpError> {
    let status = parse_status(&read(pid, "status")?);
    if let Some(tracer) = status.get("TracerPid").filter(|v| *v != "0") {
        // SAFETY: getpid has no arguments and cannot fail.
        if tracer.parse::<i32>().ok() != Some(unsafe { libc::getpid() }) {
            return Err(DumpError::State {
                pid,
                reason: format!("already traced by pid {tracer}"),
            });
        }
    }
    if let Ok(exe) = link(pid, "exe") {
        if exe.ends_with(" (deleted)") {
            return Err(DumpError::UnsupportedProcess {
                pid,
                what: format!("a deleted executable ({exe})"),
            });
        }
    }
    if let Some(mode) = status.get("Seccomp").filter(|m| m.trim() != "0") {
        return Err(DumpError::UnsupportedProcess {
            pid,
            what: format!("a seccomp filter (seccomp mode {})", mode.trim()),
        });
    }
    if status.get("State").is_some_and(|s| s.starts_with('Z')) {
        return Err(DumpError::State {
            pid,
            reason: "is a zombie".into(),
        });
    }
    Ok(())
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn link(pid: i32, name: &str) -> Result<String, DumpError> {
    let path = format!("/proc/{pid}/{name}");
    fs::read_link(&path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|source| DumpError::Proc { pid, path, source })
}

/// Everything process-wide but memory, threads, signals and files (the
/// caller fills those in).
/// The capability sets and no_new_privs from `/proc/PID/status`, with the
/// securebits read by injection.
fn caps(status: &std::collections::HashMap<String, String>, securebits: u32) -> Option<Caps> {
    let set = |k: &str| u64::from_str_radix(status.get(k)?.trim(), 16).ok();
    Some(Caps {
        inheritable: set("CapInh")?,
        permitted: set("CapPrm")?,
        effective: set("CapEff")?,
        bounding: set("CapBnd")?,
        ambient: set("CapAmb").unwrap_or(0),
        securebits,
        no_new_privs: status.get("NoNewPrivs").map(|v| v.trim() == "1")?,
    })
}

pub fn dump_process(pid: i32, brk: u64, securebits: u32) -> Result<ProcessImage, DumpError> {
    let bad = |what: &str| DumpError::State {
        pid,
        reason: format!("cannot parse {what}"),
    };
    let status = parse_status(&read(pid, "status")?);
    let stat = Stat::parse(&read(pid, "stat")?).ok_or_else(|| bad("/proc/PID/stat"))?;
    let field = |n| stat.field(n).ok_or_else(|| bad("/proc/PID/stat"));
    let ids = |key: &str| {
        status
            .get(key)
            .and_then(|v| parse_ids(v))
            .ok_or_else(|| bad(&format!("{key} in /proc/PID/status")))
    };
    let groups = status
        .get("Groups")
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let umask = status
        .get("Umask")
        .and_then(|u| u32::from_str_radix(u, 8).ok())
        .ok_or_else(|| bad("Umask in /proc/PID/status"))?;
    let personality = u32::from_str_radix(read(pid, "personality")?.trim(), 16)
        .map_err(|_| bad("/proc/PID/personality"))?;

    let auxv_path = format!("/proc/{pid}/auxv");
    let auxv = fs::read(&auxv_path).map_err(|source| DumpError::Proc {
        pid,
        path: auxv_path,
        source,
    })?;
    let mm = MmFields {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        auxv: parse_auxv(&auxv),
    };

    let exe_link = link(pid, "exe")?;
    if exe_link.ends_with(" (deleted)") {
        return Err(DumpError::UnsupportedProcess {
            pid,
            what: format!("a deleted executable ({exe_link})"),
        });
    }
    let exe_meta = fs::metadata(format!("/proc/{pid}/exe")).map_err(|source| DumpError::Proc {
        pid,
        path: format!("/proc/{pid}/exe"),
        source,
    })?;

    // /proc/PID/limits, not prlimit(2): reading another process's limits
    // with prlimit needs CAP_SYS_RESOURCE once its credentials differ.
    let limits = read(pid, "limits")?;
    let parsed = parse_limits(&limits).ok_or_else(|| bad("/proc/PID/limits"))?;
    let rlimits = RLIMITS
        .iter()
        .zip(parsed)
        .map(|(&(resource, name), (soft, hard))| Rlimit {
            resource,
            name: name.to_string(),
            soft,
            hard,
        })
        .collect();

    Ok(ProcessImage {
        pid,
        ppid: stat.field_i64(4).ok_or_else(|| bad("ppid"))? as i32,
        pgid: stat.field_i64(5).ok_or_else(|| bad("pgid"))? as i32,
        sid: stat.field_i64(6).ok_or_else(|| bad("sid"))? as i32,
        comm: read(pid, "comm")?.trim_end_matches('\n').to_string(),
        exe: file_ref(&exe_link, &exe_meta),
        creds: Creds {
            uid: ids("Uid")?,
            gid: ids("Gid")?,
            groups,
            caps: Some(
                caps(&status, securebits)
                    .ok_or_else(|| bad("Cap*/NoNewPrivs in /proc/PID/status"))?,
            ),
        },
        cwd: link(pid, "cwd")?,
        root: link(pid, "root")?,
        umask,
        personality,
        rlimits,
        mm,
        vmas: Vec::new(),
        threads: Vec::new(),
        sigactions: Vec::new(),
        shared_pending: Vec::new(),
        files: Vec::new(),
        fds: Vec::new(),
        memfds: Vec::new(),
        cuda: None,
    })
}

/// The (soft, hard) pairs of `/proc/PID/limits`, in resource order
/// (`unlimited` is `RLIM_INFINITY`).
pub fn parse_limits(text: &str) -> Option<Vec<(u64, u64)>> {
    let value = |v: &str| {
        if v == "unlimited" {
            Some(u64::MAX)
        } else {
            v.parse().ok()
        }
    };
    let out: Vec<(u64, u64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            // "Max open files            1024                 4096                 files"
            let rest = l.get(26..)?;
            let mut f = rest.split_whitespace();
            Some((value(f.next()?)?, value(f.next()?)?))
        })
        .collect::<Option<_>>()?;
    (out.len() == RLIMITS.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_limits() {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let limits = parse_limits(&text).unwrap();
        let mut nofile = libc::rlimit64 {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit64 writes into the live local.
        let r = unsafe { libc::getrlimit64(libc::RLIMIT_NOFILE, &mut nofile) };
        assert_eq!(r, 0);
        assert_eq!(limits[7], (nofile.rlim_cur, nofile.rlim_max));
        assert!(parse_limits("Limit Soft Hard Units\n").is_none());
    }
}
