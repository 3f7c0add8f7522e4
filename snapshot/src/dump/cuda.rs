//! CUDA processes at checkpoint (docs/gpu.md).
//!
//! A process that maps libcuda is a CUDA process. Before the tree is
//! frozen, each one is suspended through the driver (lock, then checkpoint:
//! the driver's own thread in the process copies GPU memory into host
//! memory and closes the `/dev/nvidia*` fds), so the dump sees an ordinary
//! process. Without a usable driver such a process is refused, naming it
//! and the reason.
//!
//! [`GpuCheckpoint`] owns the suspended processes: unless told the
//! processes were ended ([`GpuCheckpoint::ended`]) or resumed
//! ([`GpuCheckpoint::resume`]), dropping it gives every process it
//! suspended its GPU state back (restore, unlock). It must be dropped after
//! the tree is released, because the driver's restore runs in the process.

use std::time::Duration;

use cuda_ckpt::{gpus, Client, LibCuda, ProcessState};

use super::tree::{children, FrozenTree};
use super::DumpError;
use crate::image::{CudaState, Manifest};

/// What can go wrong with the GPU side of a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CudaDumpError {
    #[error("pid {pid} is a CUDA process (it maps {lib}), and its GPU state cannot be checkpointed: {source}")]
    NoDriver {
        pid: i32,
        lib: String,
        source: cuda_ckpt::Error,
    },
    #[error("pid {pid} (a CUDA process): checkpointing its GPU state: {source}")]
    Suspend { pid: i32, source: cuda_ckpt::Error },
    #[error("pid {pid} maps {lib} but joined the tree after its GPU checkpoint; checkpoint again")]
    Late { pid: i32, lib: String },
    #[error("pid {pid}: reading {what}: {source}")]
    Proc {
        pid: i32,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the snapshot is written, but giving pid {pid} its GPU state back failed: {source}; it is left suspended (try `snaprun gpu resume {pid}`)")]
    Resume { pid: i32, source: cuda_ckpt::Error },
}

/// One CUDA process of the tree.
struct Suspended {
    pid: i32,
    state: CudaState,
}

/// The CUDA processes of a tree, suspended for its dump.
pub struct GpuCheckpoint {
    client: Option<Client<LibCuda>>,
    procs: Vec<Suspended>,
    /// Processes that map libcuda but have no CUDA state (dumped as CPU
    /// processes).
    skipped: Vec<i32>,
    /// Whether dropping this resumes the processes.
    armed: bool,
}

/// The tree under `root` as it is now, root first (the processes are not
/// frozen yet: one that forks meanwhile is caught by
/// [`GpuCheckpoint::check_tree`]).
fn live_tree(root: i32) -> Result<Vec<i32>, DumpError> {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        match children(all[i]) {
            Ok(c) => {
                for c in c {
                    if !all.contains(&c) {
                        all.push(c);
                    }
                }
            }
            // A child that exited since it was listed.
            Err(_) if i > 0 => {}
            Err(e) => return Err(e),
        }
        i += 1;
    }
    Ok(all)
}

fn libcuda_of(pid: i32) -> Result<Option<String>, CudaDumpError> {
    match gpus::process_libcuda(pid) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CudaDumpError::Proc {
            pid,
            what: "maps",
            source,
        }),
    }
}

impl GpuCheckpoint {
    /// Suspends every CUDA process of the tree under `root`, waiting at
    /// most `lock_timeout` for each lock. On failure the processes already
    /// suspended are resumed (by drop) and the error names the process.
    pub fn suspend_tree(root: i32, lock_timeout: Duration) -> Result<GpuCheckpoint, DumpError> {
        let mut gpu = GpuCheckpoint {
            client: None,
            procs: Vec::new(),
            skipped: Vec::new(),
            armed: true,
        };
        for pid in live_tree(root)? {
            let Some(lib) = libcuda_of(pid)? else {
                continue;
            };
            gpu.suspend_one(pid, lib, lock_timeout)?;
        }
        Ok(gpu)
    }

    fn suspend_one(
        &mut self,
        pid: i32,
        lib: String,
        lock_timeout: Duration,
    ) -> Result<(), CudaDumpError> {
        if self.client.is_none() {
            let c = Client::open().map_err(|source| CudaDumpError::NoDriver {
                pid,
                lib: lib.clone(),
                source,
            })?;
            self.client = Some(c);
        }
        let client = self.client.as_mut().expect("opened above");
        // Which GPUs it holds, read before the checkpoint closes their fds.
        let uuids = gpus::list_gpus()
            .and_then(|all| gpus::process_gpus(pid, &all))
            .map_err(|source| CudaDumpError::Proc {
                pid,
                what: "its GPU device fds",
                source,
            })?;
        let state = match client.state(pid) {
            Ok(s) => s,
            // The driver does not know it: a process that loaded libcuda
            // but never initialised CUDA has no GPU state to move.
            Err(e) if uuids.is_empty() => {
                tracing::info!(pid, lib, error = %e, "maps libcuda but has no cuda state; dumped as a cpu process");
                self.skipped.push(pid);
                return Ok(());
            }
            Err(source) => return Err(CudaDumpError::Suspend { pid, source }),
        };
        let was_suspended = match state {
            ProcessState::Running => {
                client
                    .suspend(pid, lock_timeout)
                    .map_err(|source| CudaDumpError::Suspend { pid, source })?;
                false
            }
            // Suspended before (hot-swap): dumped as it is, left as it was.
            ProcessState::Checkpointed => true,
            other => {
                return Err(CudaDumpError::Suspend {
                    pid,
                    source: cuda_ckpt::Error::BadState {
                        pid,
                        call: "checkpoint",
                        state: other,
                        want: ProcessState::Running,
                    },
                })
            }
        };
        tracing::info!(
            pid,
            gpus = uuids.len(),
            was_suspended,
            "cuda state checkpointed"
        );
        self.procs.push(Suspended {
            pid,
            state: CudaState {
                checkpointed: true,
                gpus: uuids.iter().map(|u| u.to_string()).collect(),
                driver_api: client.version(),
                driver: cuda_ckpt::Driver::module_version(client.driver()),
                was_suspended,
            },
        });
        Ok(())
    }

    /// Refuses a frozen process that maps libcuda but was not suspended
    /// (it joined the tree after [`GpuCheckpoint::suspend_tree`]).
    pub fn check_tree(&self, tree: &FrozenTree) -> Result<(), DumpError> {
        for p in &tree.procs {
            if self.procs.iter().any(|s| s.pid == p.pid) {
                continue;
            }
            if let Some(lib) = libcuda_of(p.pid)? {
                if !self.skipped.contains(&p.pid) {
                    return Err(CudaDumpError::Late { pid: p.pid, lib }.into());
                }
            }
        }
        Ok(())
    }

    /// Writes each suspended process's CUDA state into its manifest entry.
    pub fn record(&self, manifest: &mut Manifest) {
        for p in &mut manifest.processes {
            p.cuda = self
                .procs
                .iter()
                .find(|s| s.pid == p.pid)
                .map(|s| s.state.clone());
        }
    }

    /// The processes were ended: nothing to give back.
    pub fn ended(mut self) {
        self.armed = false;
    }

    /// Gives every process this checkpoint suspended its GPU state back
    /// (`--leave-running`, after the tree is released).
    pub fn resume(mut self) -> Result<(), DumpError> {
        self.armed = false;
        self.resume_all()
    }

    fn resume_all(&mut self) -> Result<(), DumpError> {
        let Some(client) = self.client.as_mut() else {
            return Ok(());
        };
        let mut first = Ok(());
        for s in self.procs.iter().filter(|s| !s.state.was_suspended) {
            if let Err(source) = client.resume(s.pid, &[]) {
                tracing::error!(pid = s.pid, error = %source, "giving the process its gpu state back failed");
                if first.is_ok() {
                    first = Err(CudaDumpError::Resume { pid: s.pid, source }.into());
                }
            }
        }
        first
    }
}

impl Drop for GpuCheckpoint {
    fn drop(&mut self) {
        if self.armed {
            // The checkpoint failed: the source runs on, with its GPU.
            let _ = self.resume_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_without_cuda_needs_no_driver() {
        // This test process maps no libcuda: no driver is loaded, nothing
        // is suspended, and there is nothing to give back.
        let gpu =
            GpuCheckpoint::suspend_tree(std::process::id() as i32, Duration::from_secs(1)).unwrap();
        assert!(gpu.client.is_none() && gpu.procs.is_empty());
        gpu.resume().unwrap();
    }

    #[test]
    fn the_live_tree_lists_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let tree = live_tree(me).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree[0], me);
        assert!(tree.contains(&(child.id() as i32)), "{tree:?}");
    }
}
