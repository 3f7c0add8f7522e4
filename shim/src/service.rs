//! The shim binary's lifecycle as containerd drives it: `start` spawns the
//! long-lived shim for one container and prints its socket address;
//! the long-lived shim serves the task service until shutdown; `delete`
//! (run in the bundle after the shim is gone) cleans up what it left.

use std::sync::Arc;

use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{spawn, Config, ExitSignal, Flags, Shim, StartOpts};

use crate::events::Events;
use crate::options::Resolved;
use crate::reaper::Exits;
use crate::state::timestamp;
use crate::task::create::{read_pid, unmount_layers, INIT_PID_FILE};
use crate::task::TaskService;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.snaprun.v1";

pub struct Service {
    exit: Arc<ExitSignal>,
    id: String,
    namespace: String,
}

impl Shim for Service {
    type T = TaskService;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Service {
            exit: Arc::new(ExitSignal::default()),
            id: args.id.clone(),
            namespace: args.namespace.clone(),
        }
    }

    /// One shim per container: the socket is keyed by the container id.
    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        let grouping = opts.id.clone();
        let (pid, address) = spawn(opts, &grouping, Vec::new())?;
        tracing::info!(pid, address, "shim started");
        write_address(&address)?;
        Ok(address)
    }

    /// Cleans up after a shim that is gone: the container's snaprun state
    /// and the rootfs mounts.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("current dir: {e}")))?;
        match Resolved::load(&bundle) {
            Ok(resolved) => {
                let rt = resolved.snaprun(&bundle);
                if let Err(e) = rt.delete(&Exits::default(), &self.id, true) {
                    tracing::warn!(id = self.id, error = %e, "delete of the container's state");
                }
            }
            Err(e) => tracing::debug!(error = %e, "no shim options in the bundle"),
        }
        unmount_layers(&bundle.join("rootfs"));
        let pid = read_pid(&bundle.join(INIT_PID_FILE)).unwrap_or(0);
        Ok(DeleteResponse {
            pid: pid.max(0) as u32,
            // As containerd's runc shim: the process was killed.
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: Some(timestamp(std::time::SystemTime::now())).into(),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let events = Events::start(publisher, self.namespace.clone());
        TaskService::new(&self.namespace, events, self.exit.clone())
    }
}
