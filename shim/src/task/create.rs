//! Create, start and delete of the container's init: the rootfs mounts
//! containerd hands over, the stdio, `snaprun create|start|delete`, and
//! restore-on-create (`restore.rs` decides, this file acts).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use containerd_shim::api::{
    CreateTaskRequest, CreateTaskResponse, DeleteRequest, DeleteResponse, StartRequest,
    StartResponse,
};
use containerd_shim::mount::{mount_rootfs, umount_recursive};
use containerd_shim_protos::events::task::{TaskCreate, TaskDelete, TaskIO, TaskStart};
use serde::Deserialize;

use super::TaskService;
use crate::console::ConsoleSocket;
use crate::error::{Error, Result};
use crate::events::Outcome;
use crate::io::{ProcessIo, ProcessStdio, StdioPaths};
use crate::options;
use crate::restore::{self, Fallback};
use crate::runtime::{Launch, Snaprun};
use crate::state::{Container, Proc};

/// The init's pid file, in the bundle.
pub const INIT_PID_FILE: &str = "init.pid";

/// The parts of config.json the shim reads.
#[derive(Deserialize, Default)]
struct SpecView {
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<LinuxView>,
}

#[derive(Deserialize, Default)]
struct LinuxView {
    #[serde(default)]
    namespaces: Vec<NamespaceView>,
}

#[derive(Deserialize)]
struct NamespaceView {
    #[serde(rename = "type")]
    kind: String,
}

fn read_spec(bundle: &Path) -> Result<SpecView> {
    let path = bundle.join("config.json");
    let bytes = fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))
}

pub fn read_pid(path: &Path) -> Result<i32> {
    let text = fs::read_to_string(path).map_err(|e| Error::io("read the pid file", path, e))?;
    text.trim()
        .parse()
        .map_err(|_| Error::invalid(path.display().to_string(), format!("{text:?} is not a pid")))
}

/// Mounts containerd's rootfs mounts (a snapshotter's layers) on
/// BUNDLE/rootfs; none with `ctr run --rootfs DIR`.
fn mount_layers(
    bundle: &Path,
    mounts: &[containerd_shim_protos::types::mount::Mount],
) -> Result<bool> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = bundle.join("rootfs");
    fs::create_dir_all(&target).map_err(|e| Error::io("create", &target, e))?;
    for m in mounts {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = mount_rootfs(fs_type, source, &m.options, &target) {
            unmount_layers(&target);
            return Err(Error::shim(
                format!("mount {} ({}) on {}", m.source, m.type_, target.display()),
                e,
            ));
        }
    }
    Ok(true)
}

pub fn unmount_layers(rootfs: &Path) {
    if let Err(e) = umount_recursive(rootfs.to_str(), 0) {
        tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmount the rootfs failed");
    }
}

/// How the init came to be.
enum Launched {
    Cold,
    Restored,
}

impl TaskService {
    pub(super) fn do_create(&self, r: CreateTaskRequest) -> Result<CreateTaskResponse> {
        if let Some(c) = self.lock().as_ref() {
            return Err(Error::AlreadyExists(format!(
                "this shim's container {}",
                c.id
            )));
        }
        if !r.parent_checkpoint.is_empty() {
            return Err(Error::invalid(
                format!(
                    "parent checkpoint {} of container {}",
                    r.parent_checkpoint, r.id
                ),
                "snaprun restores whole checkpoints only (no pre-dump chains)",
            ));
        }
        let bundle = PathBuf::from(&r.bundle);
        let resolved = options::resolve(r.options.as_ref(), &self.shared.namespace)?;
        resolved.save(&bundle)?;
        let rt = resolved.snaprun(&bundle);
        *self
            .shared
            .runtime
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(rt.clone());

        let spec = read_spec(&bundle)?;
        let shared_pidns = !spec
            .linux
            .as_ref()
            .is_some_and(|l| l.namespaces.iter().any(|n| n.kind == "pid"));
        // A containerd checkpoint is what the task is made from: the
        // snapshot annotations (still in the checkpointed spec) do not apply.
        let from_checkpoint = !r.checkpoint.is_empty();
        if from_checkpoint && spec.annotations.contains_key(restore::SNAPSHOT) {
            tracing::info!(
                id = r.id,
                "created from a containerd checkpoint: {} ignored",
                restore::SNAPSHOT
            );
        }
        let request = match restore::request(&spec.annotations, &resolved.config) {
            _ if from_checkpoint => None,
            Ok(request) => request,
            Err(e) => {
                let name = spec.annotations.get(restore::SNAPSHOT);
                self.shared.events.restore_outcome(
                    &r.id,
                    name.map_or("", String::as_str),
                    Outcome::Failed,
                    &e.to_string(),
                );
                return Err(e);
            }
        };

        let mounted = mount_layers(&bundle, &r.rootfs)?;
        let paths = StdioPaths {
            stdin: r.stdin.clone(),
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            terminal: r.terminal,
        };
        let launched = if from_checkpoint {
            self.launch_from_checkpoint(&rt, &r.id, &bundle, &paths, Path::new(&r.checkpoint))
                .map(|(pid, io)| (pid, io, Launched::Restored))
        } else {
            self.launch_init(&rt, &r.id, &bundle, &paths, request.as_ref())
        };
        let (pid, io, how) = match launched {
            Ok(v) => v,
            Err(e) => {
                if mounted {
                    unmount_layers(&bundle.join("rootfs"));
                }
                return Err(e);
            }
        };
        let mut init = Proc::new("", paths.clone());
        init.pid = pid;
        init.io = Some(io);
        let restored = matches!(how, Launched::Restored);
        let mut g = self.lock();
        *g = Some(Container {
            id: r.id.clone(),
            bundle: bundle.clone(),
            init,
            execs: HashMap::new(),
            paused: false,
            mounted_rootfs: mounted,
            shared_pidns,
            restored,
        });
        self.shared.events.publish(TaskCreate {
            container_id: r.id.clone(),
            bundle: r.bundle.clone(),
            rootfs: r.rootfs.clone(),
            io: Some(TaskIO {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
                ..Default::default()
            })
            .into(),
            pid: pid as u32,
            ..Default::default()
        });
        // An init restored (from a snapshot or a checkpoint) already runs:
        // if it ended already, its exit waits in the unclaimed ones.
        if let Some(exit) = self.shared.exits.claim(pid) {
            self.exited(&mut g, "", exit);
        }
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// The stdio of a new process: pipes, or a console socket whose pty
    /// master arrives once the runtime made the process.
    pub(super) fn process_stdio(
        paths: &StdioPaths,
    ) -> Result<(ProcessStdio, Option<ProcessIo>, Option<ConsoleSocket>)> {
        if paths.terminal {
            Ok((ProcessIo::null_stdio()?, None, Some(ConsoleSocket::new()?)))
        } else {
            let (stdio, io) = ProcessIo::pipes(paths)?;
            Ok((stdio, Some(io), None))
        }
    }

    /// Restores the snapshot the request names, or creates the init cold
    /// (no request, or the fallback allows it); its pid and I/O.
    fn launch_init(
        &self,
        rt: &Snaprun,
        id: &str,
        bundle: &Path,
        paths: &StdioPaths,
        request: Option<&restore::Request>,
    ) -> Result<(i32, ProcessIo, Launched)> {
        let pid_file = bundle.join(INIT_PID_FILE);
        let _ = fs::remove_file(&pid_file);
        let (stdio, io, console) = Self::process_stdio(paths)?;
        let console_path = console.as_ref().map(ConsoleSocket::path);
        let launch = Launch {
            pid_file: Some(&pid_file),
            console_socket: console_path.as_deref(),
        };
        let exits = &self.shared.exits;
        let mut how = Launched::Cold;
        let mut stdio = Some(stdio);
        if let Some(req) = request {
            let name = req.snapshot.to_string();
            let attempt = restore::check_present(req).and_then(|()| {
                let s = stdio.as_ref().map(ProcessStdio::try_clone).transpose();
                let s = s.map_err(|e| e.to_string())?;
                let s = s.ok_or_else(|| "no stdio".to_string())?;
                rt.restore(exits, id, bundle, req, &launch, s)
                    .map_err(|e| e.to_string())
            });
            match attempt {
                Ok(()) => {
                    tracing::info!(id, snapshot = name, "restored on create");
                    self.shared
                        .events
                        .restore_outcome(id, &name, Outcome::Restored, "");
                    how = Launched::Restored;
                }
                Err(reason) if req.fallback == Fallback::Cold => {
                    tracing::warn!(
                        id,
                        snapshot = name,
                        reason,
                        "restore failed: cold start (io.snaprun.fallback=cold)"
                    );
                    self.shared
                        .events
                        .restore_outcome(id, &name, Outcome::Cold, &reason);
                }
                Err(reason) => {
                    tracing::error!(
                        id,
                        snapshot = name,
                        reason,
                        "restore failed and no fallback"
                    );
                    self.shared
                        .events
                        .restore_outcome(id, &name, Outcome::Failed, &reason);
                    return Err(Error::Restore {
                        id: id.to_string(),
                        reason: format!(
                            "{reason} (set {}=cold to start it without the snapshot)",
                            restore::FALLBACK
                        ),
                    });
                }
            }
        }
        if matches!(how, Launched::Cold) {
            let s = stdio
                .take()
                .ok_or_else(|| Error::FailedPrecondition("stdio used up".into()))?;
            rt.create(exits, id, bundle, &launch, s)?;
        }
        drop(stdio);
        let pid = read_pid(&pid_file)?;
        let io = match (io, console) {
            (Some(io), _) => io,
            (None, Some(sock)) => ProcessIo::terminal(paths, sock.receive()?)?,
            (None, None) => unreachable!("a process has pipes or a console"),
        };
        Ok((pid, io, how))
    }

    pub(super) fn do_start(&self, r: &StartRequest) -> Result<StartResponse> {
        if !r.exec_id.is_empty() {
            return self.start_exec(r);
        }
        let rt = self.runtime()?;
        let (id, restored) = {
            let g = self.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            if c.init.started {
                return Err(Error::FailedPrecondition(format!(
                    "container {} was started already",
                    c.id
                )));
            }
            (c.id.clone(), c.restored)
        };
        // A restored init runs already; otherwise it waits for start.
        let result = if restored {
            Ok(())
        } else {
            rt.start(&self.shared.exits, &id)
        };
        let mut g = self.lock();
        let c = g
            .as_mut()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        let pid = c.init.pid;
        if result.is_ok() {
            self.shared.events.publish(TaskStart {
                container_id: id.clone(),
                pid: pid as u32,
                ..Default::default()
            });
        }
        self.flush_pending_exit(c, "");
        result?;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    pub(super) fn do_delete(&self, r: &DeleteRequest) -> Result<DeleteResponse> {
        if !r.exec_id.is_empty() {
            return self.delete_exec(r);
        }
        let rt = self.runtime()?;
        let (id, running, mounted, bundle) = {
            let g = self.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            (
                c.id.clone(),
                c.init.started && c.init.exit.is_none(),
                c.mounted_rootfs,
                c.bundle.clone(),
            )
        };
        if running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is running: kill it first"
            )));
        }
        // --force: a created init (never started) is still waiting.
        rt.delete(&self.shared.exits, &id, true)?;
        if mounted {
            unmount_layers(&bundle.join("rootfs"));
        }
        let mut g = self.lock();
        let c = g
            .take()
            .ok_or_else(|| Error::NotFound(format!("container {id}")))?;
        let resp = DeleteResponse {
            pid: c.init.pid as u32,
            exit_status: c.init.exit_status(),
            exited_at: c.init.exited_at().into(),
            ..Default::default()
        };
        self.shared.events.publish(TaskDelete {
            container_id: id.clone(),
            pid: resp.pid,
            exit_status: resp.exit_status,
            exited_at: resp.exited_at.clone(),
            id,
            ..Default::default()
        });
        self.shared.changed.notify_all();
        Ok(resp)
    }
}
