//! What the shim knows about its container: the init process and the
//! exec'd ones, each with its stdio, pid, and exit once it ended.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use containerd_shim::api::{StateResponse, Status};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::io::{ProcessIo, StdioPaths};
use crate::reaper::Exit;

/// One process of the container (the init, or an exec).
pub struct Proc {
    /// Empty for the init.
    pub exec_id: String,
    /// 0 until the process exists.
    pub pid: i32,
    pub stdio: StdioPaths,
    pub io: Option<ProcessIo>,
    /// The runtime-spec process (JSON) of an exec.
    pub spec: Vec<u8>,
    /// Whether start ran (and its event went out).
    pub started: bool,
    /// The reaper saw the process end (its exit is set once its output
    /// drained): nothing may be signalled any more.
    pub reaped: bool,
    /// Set once the process is gone and its output drained.
    pub exit: Option<Exit>,
    /// The exit came while start was still running: its event waits for
    /// TaskStart to go out first.
    pub exit_event_pending: bool,
}

impl Proc {
    pub fn new(exec_id: &str, stdio: StdioPaths) -> Self {
        Proc {
            exec_id: exec_id.to_string(),
            pid: 0,
            stdio,
            io: None,
            spec: Vec::new(),
            started: false,
            reaped: false,
            exit: None,
            exit_event_pending: false,
        }
    }

    pub fn status(&self, paused: bool) -> Status {
        if self.exit.is_some() {
            Status::STOPPED
        } else if !self.started {
            Status::CREATED
        } else if paused {
            Status::PAUSED
        } else {
            Status::RUNNING
        }
    }

    /// Whether the process ended (even if its exit is not recorded yet).
    pub fn finished(&self) -> bool {
        self.reaped || self.exit.is_some()
    }

    /// The exit code containerd sees (0 while running).
    pub fn exit_status(&self) -> u32 {
        self.exit.map_or(0, |e| e.code as u32)
    }

    pub fn exited_at(&self) -> Option<Timestamp> {
        self.exit.map(|e| timestamp(e.at))
    }
}

pub fn timestamp(t: std::time::SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// The shim's container.
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub init: Proc,
    pub execs: HashMap<String, Proc>,
    pub paused: bool,
    /// The rootfs mounts the shim made (unmounted on delete).
    pub mounted_rootfs: bool,
    /// No pid namespace of its own: when the init ends, the rest must be
    /// killed by the shim (the kernel does it for a pid namespace).
    pub shared_pidns: bool,
    /// Created by restoring a snapshot: the process already runs.
    pub restored: bool,
}

impl Container {
    /// The init (empty EXEC_ID) or an exec.
    pub fn process(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }

    /// The live process with PID (init first).
    pub fn find_pid(&mut self, pid: i32) -> Option<&mut Proc> {
        if self.init.pid == pid && !self.init.finished() {
            return Some(&mut self.init);
        }
        self.execs
            .values_mut()
            .find(|p| p.pid == pid && !p.finished())
    }

    pub fn state(&self, p: &Proc) -> StateResponse {
        StateResponse {
            id: if p.exec_id.is_empty() {
                self.id.clone()
            } else {
                p.exec_id.clone()
            },
            bundle: self.bundle.display().to_string(),
            pid: p.pid.max(0) as u32,
            status: p.status(self.paused).into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: p.exit_status(),
            exited_at: p.exited_at().into(),
            exec_id: p.exec_id.clone(),
            ..Default::default()
        }
    }
}
