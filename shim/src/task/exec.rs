//! Exec'd processes: containerd registers one (its runtime-spec process and
//! stdio), starts it (`snaprun exec --detach`), and deletes it once it
//! ended.

use std::fs;

use containerd_shim::api::{
    DeleteRequest, DeleteResponse, ExecProcessRequest, StartRequest, StartResponse,
};
use containerd_shim_protos::events::task::{TaskExecAdded, TaskExecStarted};

use super::create::read_pid;
use super::TaskService;
use crate::error::{Error, Result};
use crate::io::{ProcessIo, StdioPaths};
use crate::runtime::Launch;
use crate::state::Proc;

/// exec ids name files in the bundle: keep them to runc's id alphabet.
fn check_exec_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("exec id {id:?}"),
            "use 1-128 of [A-Za-z0-9_+-.]",
        ))
    }
}

impl TaskService {
    pub(super) fn do_exec(&self, r: ExecProcessRequest) -> Result<()> {
        check_exec_id(&r.exec_id)?;
        let spec = r
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| Error::invalid(format!("exec {}", r.exec_id), "no process spec"))?;
        let mut g = self.lock();
        let c = g
            .as_mut()
            .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
        if c.init.exit.is_some() || !c.init.started {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            )));
        }
        if c.execs.contains_key(&r.exec_id) {
            return Err(Error::AlreadyExists(format!("exec {}", r.exec_id)));
        }
        let mut p = Proc::new(
            &r.exec_id,
            StdioPaths {
                stdin: r.stdin.clone(),
                stdout: r.stdout.clone(),
                stderr: r.stderr.clone(),
                terminal: r.terminal,
            },
        );
        p.spec = spec;
        c.execs.insert(r.exec_id.clone(), p);
        self.shared.events.publish(TaskExecAdded {
            container_id: c.id.clone(),
            exec_id: r.exec_id,
            ..Default::default()
        });
        Ok(())
    }

    pub(super) fn start_exec(&self, r: &StartRequest) -> Result<StartResponse> {
        let rt = self.runtime()?;
        let (id, bundle, paths, spec) = {
            let g = self.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            let p = c
                .execs
                .get(&r.exec_id)
                .ok_or_else(|| Error::NotFound(format!("exec {}", r.exec_id)))?;
            if p.started {
                return Err(Error::FailedPrecondition(format!(
                    "exec {} was started already",
                    r.exec_id
                )));
            }
            (
                c.id.clone(),
                c.bundle.clone(),
                p.stdio.clone(),
                p.spec.clone(),
            )
        };
        let process_file = bundle.join(format!("exec-{}.json", r.exec_id));
        let pid_file = bundle.join(format!("exec-{}.pid", r.exec_id));
        fs::write(&process_file, &spec).map_err(|e| Error::io("write", &process_file, e))?;
        let _ = fs::remove_file(&pid_file);
        let (stdio, io, console) = Self::process_stdio(&paths)?;
        let console_path = console.as_ref().map(|c| c.path());
        let launch = Launch {
            pid_file: Some(&pid_file),
            console_socket: console_path.as_deref(),
        };
        let ran = rt.exec(&self.shared.exits, &id, &process_file, &launch, stdio);
        let _ = fs::remove_file(&process_file);
        let started = ran.and_then(|()| {
            let pid = read_pid(&pid_file)?;
            let io = match (io, console) {
                (Some(io), _) => io,
                (None, Some(sock)) => ProcessIo::terminal(&paths, sock.receive()?)?,
                (None, None) => unreachable!("a process has pipes or a console"),
            };
            Ok((pid, io))
        });
        let _ = fs::remove_file(&pid_file);
        let mut g = self.lock();
        let c = g
            .as_mut()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        let (pid, io) = match started {
            Ok(v) => v,
            Err(e) => {
                // containerd deletes the exec after a failed start.
                if let Some(p) = c.execs.get_mut(&r.exec_id) {
                    p.started = true;
                    p.exit = Some(crate::reaper::Exit::now(255));
                }
                self.shared.changed.notify_all();
                return Err(e);
            }
        };
        let p = c
            .execs
            .get_mut(&r.exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {}", r.exec_id)))?;
        p.pid = pid;
        p.io = Some(io);
        self.shared.events.publish(TaskExecStarted {
            container_id: id,
            exec_id: r.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        self.flush_pending_exit(c, &r.exec_id);
        // It may have ended before its pid was known here.
        if let Some(exit) = self.shared.exits.claim(pid) {
            self.exited(&mut g, &r.exec_id, exit);
        }
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    pub(super) fn delete_exec(&self, r: &DeleteRequest) -> Result<DeleteResponse> {
        let mut g = self.lock();
        let c = g
            .as_mut()
            .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
        let p = c
            .execs
            .get(&r.exec_id)
            .ok_or_else(|| Error::NotFound(format!("exec {}", r.exec_id)))?;
        if p.started && p.exit.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "exec {} is running: kill it first",
                r.exec_id
            )));
        }
        let p = c.execs.remove(&r.exec_id).expect("checked above");
        self.shared.changed.notify_all();
        Ok(DeleteResponse {
            pid: p.pid.max(0) as u32,
            exit_status: p.exit_status(),
            exited_at: p.exited_at().into(),
            ..Default::default()
        })
    }
}
