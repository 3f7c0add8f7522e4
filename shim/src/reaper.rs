//! Children and exits. The shim is a child subreaper: containerd-shim's
//! signal thread reaps every child (the runtime commands it runs, and the
//! container processes that fall to it when `snaprun` exits) and hands each
//! exit to the subscribers of its monitor. So a command is never waited for
//! directly; its exit comes through a subscription taken before it starts.
//!
//! An exit whose pid the shim does not know yet (an exec'd process that
//! ended before its pid file was read) is kept as unclaimed for a while.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::monitor::{monitor_subscribe, ExitEvent, Subject, Topic};

use crate::error::{Error, Result};

/// How long an exit nobody claimed is kept.
const UNCLAIMED_FOR: Duration = Duration::from_secs(60);

/// A process's end: its exit code (128+N for signal N) and when.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    pub code: i32,
    pub at: SystemTime,
}

impl Exit {
    pub fn now(code: i32) -> Self {
        Exit {
            code,
            at: SystemTime::now(),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// Pids of the runtime commands in flight: their exits are theirs.
    commands: HashSet<i32>,
    unclaimed: HashMap<i32, (Exit, Instant)>,
}

/// The exits the shim has seen and not matched to a process yet.
#[derive(Default)]
pub struct Exits {
    inner: Mutex<Inner>,
}

impl Exits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether PID is a runtime command's (whose exit its runner takes);
    /// forgets it.
    pub fn is_command(&self, pid: i32) -> bool {
        self.lock().commands.remove(&pid)
    }

    /// Keeps the exit of a pid no process claims (yet).
    pub fn keep_unclaimed(&self, pid: i32, exit: Exit) {
        let mut g = self.lock();
        let now = Instant::now();
        g.unclaimed
            .retain(|_, (_, t)| now.duration_since(*t) < UNCLAIMED_FOR);
        g.unclaimed.insert(pid, (exit, now));
    }

    /// The exit of PID if it came before the shim knew the pid.
    pub fn claim(&self, pid: i32) -> Option<Exit> {
        self.lock().unclaimed.remove(&pid).map(|(e, _)| e)
    }

    /// Spawns CMD, marking its pid as a command's before the reaper can
    /// see it exit.
    fn spawn(&self, cmd: &mut Command) -> std::io::Result<Child> {
        let mut g = self.lock();
        let child = cmd.spawn()?;
        g.commands.insert(child.id() as i32);
        Ok(child)
    }
}

/// What a finished command left.
pub struct Output {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

fn read_all(r: Option<impl Read + Send + 'static>) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        buf
    })
}

/// Runs CMD to its end (its stdout and stderr are collected where they are
/// piped) and returns its exit code.
pub fn run(exits: &Exits, what: &str, cmd: &mut Command) -> Result<Output> {
    let sub = monitor_subscribe(Topic::Pid).map_err(|e| Error::shim("subscribe to exits", e))?;
    let mut child = exits.spawn(cmd).map_err(|e| Error::Sys {
        what: format!("run {what}"),
        source: e,
    })?;
    let pid = child.id() as i32;
    let out = read_all(child.stdout.take());
    let err = read_all(child.stderr.take());
    let code = loop {
        match sub.rx.recv() {
            Ok(ExitEvent {
                subject: Subject::Pid(p),
                exit_code,
            }) if p == pid => break exit_code,
            Ok(_) => continue,
            Err(_) => {
                return Err(Error::FailedPrecondition(format!(
                    "the exit monitor stopped while {what} (pid {pid}) ran"
                )))
            }
        }
    };
    Ok(Output {
        code,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unclaimed_exits_wait_for_their_process() {
        let exits = Exits::default();
        exits.keep_unclaimed(4242, Exit::now(7));
        assert!(exits.claim(1).is_none());
        assert_eq!(exits.claim(4242).map(|e| e.code), Some(7));
        assert!(exits.claim(4242).is_none(), "an exit is claimed once");
    }

    #[test]
    fn a_command_exit_is_the_command_s() {
        let exits = Exits::default();
        exits.lock().commands.insert(99);
        assert!(exits.is_command(99));
        assert!(!exits.is_command(99), "forgotten once seen");
    }
}
