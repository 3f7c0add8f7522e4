//! Facts about processes read from /proc.

use std::fs;

/// The fields of /proc/PID/stat after the command name.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces or parentheses.
    let after = &text[text.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// The process's state letter and start time (clock ticks after boot).
pub fn state_and_start(pid: i32) -> Option<(char, u64)> {
    let f = stat_fields(pid)?;
    // Field 3 is the state; field 22 the start time (indices from field 3).
    let state = f.first()?.chars().next()?;
    let start = f.get(19)?.parse().ok()?;
    Some((state, start))
}

pub fn start_time(pid: i32) -> Option<u64> {
    state_and_start(pid).map(|(_, s)| s)
}

/// Whether PID is the process that started at START and has not exited
/// (a zombie counts as exited).
pub fn alive_since(pid: i32, start: u64) -> bool {
    matches!(state_and_start(pid), Some((st, s)) if s == start && st != 'Z' && st != 'X')
}

/// The number of threads of this process.
pub fn thread_count() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

/// Refuses to go on in a multi-threaded process: a fork-style child that
/// runs Rust code could wait forever on a lock another thread held.
pub fn check_single_threaded(what: &str) -> super::error::Result<()> {
    match thread_count() {
        1 => Ok(()),
        n => Err(super::error::Error::WrongState(format!(
            "{what} must run in a single-threaded process (this one has {n} threads)"
        ))),
    }
}

/// The uid, ppid and command line of PID, for `ps`.
pub fn describe(pid: i32) -> Option<(u32, i32, String)> {
    let f = stat_fields(pid)?;
    let ppid = f.get(1)?.parse().ok()?;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| u.parse().ok())
        .unwrap_or(0);
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd: String = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.is_empty() {
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        cmd = format!("[{}]", comm.trim());
    }
    Some((uid, ppid, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(alive_since(me, start));
        assert!(!alive_since(me, start + 1));
        let (_, ppid, cmd) = describe(me).unwrap();
        assert!(ppid > 0 && !cmd.is_empty());
    }
}
