//! The requests on a running task: state, wait, kill, pids, pause/resume,
//! stdio (close, resize), cgroup limits and statistics, and the shim's own
//! connect/shutdown (checkpoint: `checkpoint.rs`).

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, KillRequest, PidsRequest, PidsResponse,
    ResizePtyRequest, ShutdownRequest, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::cgroup::{collect_metrics, get_cgroup, update_resources};
use containerd_shim::util::convert_to_any;
use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::types::task::ProcessInfo;

use super::TaskService;
use crate::error::{Error, Result};
use crate::events::PUBLISH_TIMEOUT;
use crate::state::Container;

fn not_found(c: &Container, exec_id: &str) -> Error {
    if exec_id.is_empty() {
        Error::NotFound(format!("container {}", c.id))
    } else {
        Error::NotFound(format!("exec {exec_id} of container {}", c.id))
    }
}

impl TaskService {
    /// The live init's pid, or why there is none.
    fn running_init(&self) -> Result<(String, i32)> {
        let g = self.lock();
        let c = g
            .as_ref()
            .ok_or_else(|| Error::NotFound("the container".into()))?;
        if c.init.exit.is_some() || c.init.pid <= 0 {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        Ok((c.id.clone(), c.init.pid))
    }

    pub(super) fn do_state(&self, r: &StateRequest) -> Result<StateResponse> {
        let g = self.lock();
        let c = g
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
        let p = c
            .process(&r.exec_id)
            .ok_or_else(|| not_found(c, &r.exec_id))?;
        Ok(c.state(p))
    }

    /// Blocks until the process ended (its output drained).
    pub(super) fn do_wait(&self, r: &WaitRequest) -> Result<WaitResponse> {
        let mut g = self.lock();
        loop {
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            let p = c
                .process(&r.exec_id)
                .ok_or_else(|| not_found(c, &r.exec_id))?;
            if p.exit.is_some() {
                return Ok(WaitResponse {
                    exit_status: p.exit_status(),
                    exited_at: p.exited_at().into(),
                    ..Default::default()
                });
            }
            g = self
                .shared
                .changed
                .wait(g)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A signal to the init (`snaprun kill`) or an exec (kill(2)). A
    /// process that ended answers NotFound, as containerd expects (its
    /// forced delete and CRI's stop tolerate that, not another error); so
    /// does `--all` once the init ended and snaprun finds nothing to
    /// signal.
    pub(super) fn do_kill(&self, r: &KillRequest) -> Result<()> {
        let rt = self.runtime()?;
        let finished = |c: &Container| {
            Error::NotFound(format!(
                "process {} (already finished)",
                if r.exec_id.is_empty() {
                    &c.id
                } else {
                    &r.exec_id
                }
            ))
        };
        let id = {
            let g = self.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            let p = c
                .process(&r.exec_id)
                .ok_or_else(|| not_found(c, &r.exec_id))?;
            if !r.exec_id.is_empty() {
                if p.pid <= 0 {
                    return Err(Error::FailedPrecondition(format!(
                        "exec {} was not started",
                        r.exec_id
                    )));
                }
                if p.finished() {
                    return Err(finished(c));
                }
                // SAFETY: kill(2) with the pid of this shim's child, under
                // the container's lock, which the exit handler takes to set
                // `reaped` as soon as the reaper reports the pid: it was
                // not reported reaped, so the pid is not free for reuse
                // (but for the instant between the reap and its report).
                if unsafe { libc::kill(p.pid, r.signal as i32) } != 0 {
                    return Err(Error::last_os(format!(
                        "send signal {} to exec {} (pid {})",
                        r.signal, r.exec_id, p.pid
                    )));
                }
                return Ok(());
            }
            if p.finished() && !r.all {
                return Err(finished(c));
            }
            c.id.clone()
        };
        match rt.kill(&self.shared.exits, &id, r.signal, r.all) {
            // The init ended meanwhile (or had, with --all): snaprun says
            // the container is not running.
            Err(e) => match self.lock().as_ref() {
                Some(c) if c.init.finished() => {
                    tracing::debug!(id, error = %e, "kill of a finished init");
                    Err(finished(c))
                }
                _ => Err(e),
            },
            ok => ok,
        }
    }

    pub(super) fn do_pids(&self, r: &PidsRequest) -> Result<PidsResponse> {
        let rt = self.runtime()?;
        let pids = rt.ps(&self.shared.exits, &r.id)?;
        let g = self.lock();
        let mut processes = Vec::new();
        for pid in pids {
            let mut info = ProcessInfo {
                pid: pid as u32,
                ..Default::default()
            };
            let exec = g
                .as_ref()
                .and_then(|c| c.execs.values().find(|p| p.pid == pid && pid > 0));
            if let Some(p) = exec {
                let details = ProcessDetails {
                    exec_id: p.exec_id.clone(),
                    ..Default::default()
                };
                let any = convert_to_any(Box::new(details))
                    .map_err(|e| Error::shim("encode the process details", e))?;
                info.info = Some(any).into();
            }
            processes.push(info);
        }
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(super) fn do_pause(&self, id: &str, pause: bool) -> Result<()> {
        let rt = self.runtime()?;
        let (cid, _) = self.running_init()?;
        if pause {
            rt.pause(&self.shared.exits, &cid)?;
        } else {
            rt.resume(&self.shared.exits, &cid)?;
        }
        let mut g = self.lock();
        if let Some(c) = g.as_mut() {
            c.paused = pause;
        }
        if pause {
            self.shared.events.publish(TaskPaused {
                container_id: id.to_string(),
                ..Default::default()
            });
        } else {
            self.shared.events.publish(TaskResumed {
                container_id: id.to_string(),
                ..Default::default()
            });
        }
        Ok(())
    }

    pub(super) fn do_close_io(&self, r: &CloseIORequest) -> Result<()> {
        let g = self.lock();
        let c = g
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
        let p = c
            .process(&r.exec_id)
            .ok_or_else(|| not_found(c, &r.exec_id))?;
        if r.stdin {
            if let Some(io) = &p.io {
                io.close_stdin();
            }
        }
        Ok(())
    }

    pub(super) fn do_resize(&self, r: &ResizePtyRequest) -> Result<()> {
        let g = self.lock();
        let c = g
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
        let p = c
            .process(&r.exec_id)
            .ok_or_else(|| not_found(c, &r.exec_id))?;
        match &p.io {
            Some(io) => io.resize(r.width, r.height),
            None => Err(Error::FailedPrecondition(format!(
                "process {} has no stdio yet",
                if r.exec_id.is_empty() {
                    &c.id
                } else {
                    &r.exec_id
                }
            ))),
        }
    }

    /// New cgroup limits: the runtime-spec LinuxResources (JSON) containerd
    /// sends, written into the init's cgroups.
    pub(super) fn do_update(&self, r: &UpdateTaskRequest) -> Result<()> {
        let (id, pid) = self.running_init()?;
        let bytes = r
            .resources
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        if bytes.is_empty() {
            return Ok(());
        }
        let res: oci_spec::runtime::LinuxResources = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("resources for container {id}"), e.to_string()))?;
        let cg = get_cgroup(pid as u32)
            .map_err(|e| Error::shim(format!("find the cgroups of pid {pid}"), e))?;
        update_resources(&cg, &res)
            .map_err(|e| Error::shim(format!("update the cgroups of container {id}"), e))
    }

    /// Cgroup statistics of the container (what its cgroups give).
    pub(super) fn do_stats(&self, _r: &StatsRequest) -> Result<StatsResponse> {
        let (id, pid) = self.running_init()?;
        let cg = get_cgroup(pid as u32)
            .map_err(|e| Error::shim(format!("find the cgroups of pid {pid}"), e))?;
        let metrics = collect_metrics(&cg)
            .map_err(|e| Error::shim(format!("read the cgroups of container {id}"), e))?;
        let any =
            convert_to_any(Box::new(metrics)).map_err(|e| Error::shim("encode the metrics", e))?;
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    pub(super) fn do_connect(&self, _r: &ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self.lock().as_ref().map_or(0, |c| c.init.pid.max(0) as u32);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// Ends the shim once its container is gone (containerd calls this after
    /// delete; a shim still holding a container stays).
    pub(super) fn do_shutdown(&self, _r: &ShutdownRequest) -> Result<()> {
        if self.lock().is_some() {
            tracing::debug!("shutdown ignored: the container is still here");
            return Ok(());
        }
        self.shared.events.flush(PUBLISH_TIMEOUT);
        self.shared.exit_signal.signal();
        Ok(())
    }
}
