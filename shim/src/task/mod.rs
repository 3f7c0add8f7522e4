//! The task service containerd calls (task API v2). One shim serves one
//! container: its init and its exec'd processes. Each request is handled in
//! the file of its concern (`create.rs`: create/start/delete of the init;
//! `exec.rs`; `checkpoint.rs`: checkpoint, and create from a checkpoint;
//! `control.rs`: the rest); this file holds the shared state, the
//! exit handling, and the trait impl that dispatches to them.

mod checkpoint;
mod control;
pub(crate) mod create;
mod exec;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use containerd_shim::api::{self, Empty};
use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use containerd_shim_protos::events::task::TaskExit;

use crate::events::Events;
use crate::reaper::{Exit, Exits};
use crate::runtime::Snaprun;
use crate::state::{timestamp, Container};

/// How long an exit waits for the process's output to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Shared {
    pub namespace: String,
    pub container: Mutex<Option<Container>>,
    /// Signalled whenever a process's exit is recorded.
    pub changed: Condvar,
    pub exits: Exits,
    pub events: Events,
    /// Set by create: how to run snaprun for this container.
    pub runtime: Mutex<Option<Snaprun>>,
    pub exit_signal: Arc<ExitSignal>,
}

/// The shim's task service.
#[derive(Clone)]
pub struct TaskService {
    shared: Arc<Shared>,
}

impl TaskService {
    pub(crate) fn new(namespace: &str, events: Events, exit_signal: Arc<ExitSignal>) -> Self {
        let shared = Arc::new(Shared {
            namespace: namespace.to_string(),
            container: Mutex::new(None),
            changed: Condvar::new(),
            exits: Exits::default(),
            events,
            runtime: Mutex::new(None),
            exit_signal,
        });
        let s = TaskService { shared };
        s.watch_exits();
        s
    }

    fn lock(&self) -> MutexGuard<'_, Option<Container>> {
        self.shared
            .container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn runtime(&self) -> crate::error::Result<Snaprun> {
        self.shared
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| crate::error::Error::NotFound("the container (no create yet)".into()))
    }

    /// Subscribes to the reaper's exits and records each one.
    fn watch_exits(&self) {
        let sub = match monitor_subscribe(Topic::Pid) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot subscribe to exits: no exit will be reported");
                return;
            }
        };
        let me = self.clone();
        thread::spawn(move || {
            for ev in sub.rx.iter() {
                if let Subject::Pid(pid) = ev.subject {
                    me.on_exit(pid, ev.exit_code);
                }
            }
        });
    }

    fn on_exit(&self, pid: i32, code: i32) {
        if self.shared.exits.is_command(pid) {
            return;
        }
        let exit = Exit::now(code);
        let mut g = self.lock();
        let found = g
            .as_mut()
            .and_then(|c| c.find_pid(pid).map(|p| p.exec_id.clone()));
        match found {
            Some(exec_id) => {
                tracing::info!(pid, code, exec_id, "process exited");
                self.exited(&mut g, &exec_id, exit);
            }
            None => {
                tracing::debug!(pid, code, "exit of a pid no process claims (yet)");
                self.shared.exits.keep_unclaimed(pid, exit);
            }
        }
    }

    /// Records that the process EXEC_ID ended: once its output drained (on a
    /// thread of its own), its exit is set, waiters wake, and TaskExit goes
    /// out.
    fn exited(&self, g: &mut MutexGuard<'_, Option<Container>>, exec_id: &str, exit: Exit) {
        let Some(c) = g.as_mut() else { return };
        let shared_pidns = c.shared_pidns;
        let Some(p) = c.process_mut(exec_id) else {
            return;
        };
        p.reaped = true;
        let drain = p.io.as_mut().and_then(|io| io.take_drain());
        let me = self.clone();
        let exec_id = exec_id.to_string();
        thread::spawn(move || {
            if let Some(d) = drain {
                if !d.wait(DRAIN_TIMEOUT) {
                    tracing::warn!(exec_id, "output still open after the process exited");
                }
            }
            if exec_id.is_empty() && shared_pidns {
                me.kill_rest();
            }
            me.record_exit(&exec_id, exit);
        });
    }

    /// The init of a container without its own pid namespace ended: its
    /// other processes are ended too.
    fn kill_rest(&self) {
        let Ok(rt) = self.runtime() else { return };
        let id = match self.lock().as_ref() {
            Some(c) => c.id.clone(),
            None => return,
        };
        if let Err(e) = rt.kill(&self.shared.exits, &id, libc::SIGKILL as u32, true) {
            tracing::debug!(error = %e, "kill the rest of the container");
        }
    }

    fn record_exit(&self, exec_id: &str, exit: Exit) {
        let mut g = self.lock();
        let Some(c) = g.as_mut() else { return };
        let id = c.id.clone();
        let Some(p) = c.process_mut(exec_id) else {
            return;
        };
        p.exit = Some(exit);
        let event = TaskExit {
            container_id: id.clone(),
            id: if exec_id.is_empty() {
                id
            } else {
                exec_id.to_string()
            },
            pid: p.pid as u32,
            exit_status: exit.code as u32,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        };
        if p.started {
            self.shared.events.publish(event);
        } else {
            p.exit_event_pending = true;
        }
        self.shared.changed.notify_all();
    }

    /// After a process's start event went out: its exit event, if the exit
    /// came first.
    fn flush_pending_exit(&self, c: &mut Container, exec_id: &str) {
        let id = c.id.clone();
        let Some(p) = c.process_mut(exec_id) else {
            return;
        };
        p.started = true;
        if !p.exit_event_pending {
            return;
        }
        p.exit_event_pending = false;
        let Some(exit) = p.exit else { return };
        self.shared.events.publish(TaskExit {
            container_id: id.clone(),
            id: if exec_id.is_empty() {
                id
            } else {
                exec_id.to_string()
            },
            pid: p.pid as u32,
            exit_status: exit.code as u32,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        });
    }
}

macro_rules! rpc {
    ($name:literal, $e:expr) => {{
        let r = $e;
        if let Err(e) = &r {
            tracing::warn!(rpc = $name, error = %e, "request failed");
        }
        r.map_err(Into::into)
    }};
    (empty $name:literal, $e:expr) => {
        rpc!($name, $e.map(|()| Empty::default()))
    };
}

impl Task for TaskService {
    fn state(&self, _: &TtrpcContext, r: api::StateRequest) -> TtrpcResult<api::StateResponse> {
        rpc!("state", self.do_state(&r))
    }

    fn create(
        &self,
        _: &TtrpcContext,
        r: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let res = self.do_create(r);
        if res.is_err() {
            // containerd ends the shim after a failed create: the events
            // that say why must be out first.
            self.shared.events.flush(crate::events::PUBLISH_TIMEOUT);
        }
        rpc!("create", res)
    }

    fn start(&self, _: &TtrpcContext, r: api::StartRequest) -> TtrpcResult<api::StartResponse> {
        rpc!("start", self.do_start(&r))
    }

    fn delete(&self, _: &TtrpcContext, r: api::DeleteRequest) -> TtrpcResult<api::DeleteResponse> {
        rpc!("delete", self.do_delete(&r))
    }

    fn pids(&self, _: &TtrpcContext, r: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        rpc!("pids", self.do_pids(&r))
    }

    fn pause(&self, _: &TtrpcContext, r: api::PauseRequest) -> TtrpcResult<Empty> {
        rpc!(empty "pause", self.do_pause(&r.id, true))
    }

    fn resume(&self, _: &TtrpcContext, r: api::ResumeRequest) -> TtrpcResult<Empty> {
        rpc!(empty "resume", self.do_pause(&r.id, false))
    }

    fn checkpoint(&self, _: &TtrpcContext, r: api::CheckpointTaskRequest) -> TtrpcResult<Empty> {
        rpc!(empty "checkpoint", self.do_checkpoint(&r))
    }

    fn kill(&self, _: &TtrpcContext, r: api::KillRequest) -> TtrpcResult<Empty> {
        rpc!(empty "kill", self.do_kill(&r))
    }

    fn exec(&self, _: &TtrpcContext, r: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        rpc!(empty "exec", self.do_exec(r))
    }

    fn resize_pty(&self, _: &TtrpcContext, r: api::ResizePtyRequest) -> TtrpcResult<Empty> {
        rpc!(empty "resize_pty", self.do_resize(&r))
    }

    fn close_io(&self, _: &TtrpcContext, r: api::CloseIORequest) -> TtrpcResult<Empty> {
        rpc!(empty "close_io", self.do_close_io(&r))
    }

    fn update(&self, _: &TtrpcContext, r: api::UpdateTaskRequest) -> TtrpcResult<Empty> {
        rpc!(empty "update", self.do_update(&r))
    }

    fn wait(&self, _: &TtrpcContext, r: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        rpc!("wait", self.do_wait(&r))
    }

    fn stats(&self, _: &TtrpcContext, r: api::StatsRequest) -> TtrpcResult<api::StatsResponse> {
        rpc!("stats", self.do_stats(&r))
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        r: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        rpc!("connect", self.do_connect(&r))
    }

    fn shutdown(&self, _: &TtrpcContext, r: api::ShutdownRequest) -> TtrpcResult<Empty> {
        rpc!(empty "shutdown", self.do_shutdown(&r))
    }
}
