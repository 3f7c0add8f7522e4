//! containerd's checkpoint API: `Checkpoint` of the container's init task
//! (`snaprun checkpoint --image-path DIR`, into the directory containerd
//! then archives as its checkpoint image), and the create of a task from
//! such a checkpoint (`CreateTaskRequest.checkpoint`: containerd unpacked
//! the image into a directory; `snaprun restore --image-path DIR`).

use std::path::Path;
use std::time::{Duration, Instant};

use containerd_shim::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::TaskCheckpointed;

use super::create::{read_pid, INIT_PID_FILE};
use super::TaskService;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::io::{ProcessIo, StdioPaths};
use crate::runtime::{Launch, Snaprun};

/// How long a checkpoint with `exit` waits for the init's exit to be
/// recorded (snaprun killed it before it returned; the shim's reaper and
/// the output drain follow).
const EXIT_RECORD_TIMEOUT: Duration = Duration::from_secs(5);

impl TaskService {
    /// Checkpoints the container (its init's task: a checkpoint holds the
    /// whole container) into the request's directory. With `exit` the
    /// container is gone afterwards: its init's exit is recorded and
    /// TaskExit published, as for any exit, before this returns.
    pub(super) fn do_checkpoint(&self, r: &CheckpointTaskRequest) -> Result<()> {
        let rt = self.runtime()?;
        let id = {
            let g = self.lock();
            let c = g
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("container {}", r.id)))?;
            if r.id != c.id {
                if c.execs.contains_key(&r.id) {
                    return Err(Error::FailedPrecondition(format!(
                        "exec {} of container {}: only the container's init task can be \
                         checkpointed (a checkpoint holds the whole container)",
                        r.id, c.id
                    )));
                }
                return Err(Error::NotFound(format!(
                    "task {} (this shim's container is {})",
                    r.id, c.id
                )));
            }
            if c.init.exit.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "container {} has stopped: only a running container can be checkpointed",
                    c.id
                )));
            }
            if !c.init.started {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is created, not started: only a running container can be \
                     checkpointed",
                    c.id
                )));
            }
            c.id.clone()
        };
        let plan = checkpoint::plan(&id, &r.path, r.options.as_ref())?;
        tracing::info!(id, image = %plan.image.display(), exit = plan.exit, flags = ?plan.flags, "checkpoint");
        rt.checkpoint(&self.shared.exits, &id, &plan.args()?)?;
        self.shared.events.publish(TaskCheckpointed {
            container_id: id.clone(),
            checkpoint: plan.image.display().to_string(),
            ..Default::default()
        });
        if plan.exit {
            self.wait_init_exit(&id, EXIT_RECORD_TIMEOUT);
        }
        Ok(())
    }

    /// Waits until the init's exit is recorded, at most TIMEOUT.
    fn wait_init_exit(&self, id: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            match g.as_ref() {
                Some(c) if c.init.exit.is_none() => {}
                _ => return,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    id,
                    "the init's exit is not recorded {timeout:?} after the checkpoint ended it"
                );
                return;
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Creates the init by restoring the checkpoint containerd unpacked
    /// into IMAGE, with the container's stdio as for a normal create; its
    /// pid and I/O. The restored process runs already (`Start` reports it).
    pub(super) fn launch_from_checkpoint(
        &self,
        rt: &Snaprun,
        id: &str,
        bundle: &Path,
        paths: &StdioPaths,
        image: &Path,
    ) -> Result<(i32, ProcessIo)> {
        if paths.terminal {
            return Err(Error::FailedPrecondition(format!(
                "container {id} asks for a terminal: snaprun checkpoints no container with a \
                 terminal, so none is restored from {}",
                image.display()
            )));
        }
        let pid_file = bundle.join(INIT_PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let (stdio, io, _console) = Self::process_stdio(paths)?;
        let io = io.ok_or_else(|| {
            Error::FailedPrecondition(format!("container {id}: no stdio pipes for the restore"))
        })?;
        let launch = Launch {
            pid_file: Some(&pid_file),
            console_socket: None,
        };
        rt.restore_image(&self.shared.exits, id, bundle, image, &launch, stdio)?;
        let pid = read_pid(&pid_file)?;
        tracing::info!(id, pid, image = %image.display(), "restored from a containerd checkpoint");
        Ok((pid, io))
    }
}
