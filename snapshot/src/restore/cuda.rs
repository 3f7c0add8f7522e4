//! CUDA processes at restore (docs/gpu.md).
//!
//! A process whose manifest entry has CUDA state holds its GPU memory in
//! the host memory just restored. Once the tree runs again, the driver
//! moves it back onto a GPU (`cuCheckpointProcessRestore`, with the GPU map
//! when the GPUs differ) and lets CUDA calls through
//! (`cuCheckpointProcessUnlock`).
//!
//! Everything that can be checked before a process exists is checked in
//! [`prepare`]: the driver (else the restore is refused), the GPU map, and
//! that every GPU the process will land on is on this machine.

use cuda_ckpt::{complete_map, gpus, Client, GpuPair, GpuUuid, LibCuda};

use super::RestoreError;
use crate::image::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum CudaRestoreError {
    #[error("pid {pid} was checkpointed with its GPU state (a CUDA process), so its restore needs the CUDA driver: {source}")]
    NoDriver { pid: i32, source: cuda_ckpt::Error },
    #[error("pid {pid}: the manifest's GPU {text:?}: {source}")]
    BadUuid {
        pid: i32,
        text: String,
        source: cuda_ckpt::ParseError,
    },
    #[error("pid {pid}: --gpu-map: {source}")]
    BadMap {
        pid: i32,
        source: cuda_ckpt::ParseError,
    },
    #[error("pid {pid} ran on GPU {uuid}, which this machine does not have (it has {present}); map it onto one of those with --gpu-map {uuid}=NEW")]
    MissingGpu {
        pid: i32,
        uuid: GpuUuid,
        present: String,
    },
    #[error("reading the GPUs of this machine: {0}")]
    ListGpus(std::io::Error),
    #[error("pid {pid} (restored as pid {host_pid}): giving it its GPU state back: {source}; the restored processes were killed")]
    Resume {
        pid: i32,
        host_pid: i32,
        source: cuda_ckpt::Error,
    },
}

/// The CUDA processes of a snapshot, ready to be given their GPUs back.
pub struct GpuRestore {
    client: Client<LibCuda>,
    /// Each CUDA process's pid in the snapshot and its GPU pairs.
    procs: Vec<(i32, Vec<GpuPair>)>,
}

/// Checks a snapshot's CUDA processes before anything is restored, and
/// opens the driver: `None` when the snapshot has no CUDA process.
pub fn prepare(m: &Manifest, map: &[GpuPair]) -> Result<Option<GpuRestore>, RestoreError> {
    let cuda: Vec<_> = m
        .processes
        .iter()
        .filter_map(|p| {
            p.cuda
                .as_ref()
                .filter(|c| c.checkpointed)
                .map(|c| (p.pid, c))
        })
        .collect();
    let Some(&(first, _)) = cuda.first() else {
        return Ok(None);
    };
    let client =
        Client::open().map_err(|source| CudaRestoreError::NoDriver { pid: first, source })?;
    let present = gpus::list_gpus().map_err(CudaRestoreError::ListGpus)?;
    let present: Vec<GpuUuid> = present.iter().map(|g| g.uuid).collect();
    let mut procs = Vec::with_capacity(cuda.len());
    for (pid, c) in cuda {
        let recorded = c
            .gpus
            .iter()
            .map(|t| {
                t.parse().map_err(|source| CudaRestoreError::BadUuid {
                    pid,
                    text: t.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<GpuUuid>, _>>()?;
        let pairs = plan(pid, &recorded, map, &present)?;
        procs.push((pid, pairs));
    }
    Ok(Some(GpuRestore { client, procs }))
}

/// The driver's GPU pairs for a process that ran on `recorded`, given the
/// user's `map`, checked against the GPUs `present` here (not checked when
/// nothing is recorded: the driver then restores where it can).
fn plan(
    pid: i32,
    recorded: &[GpuUuid],
    map: &[GpuPair],
    present: &[GpuUuid],
) -> Result<Vec<GpuPair>, CudaRestoreError> {
    let pairs =
        complete_map(recorded, map).map_err(|source| CudaRestoreError::BadMap { pid, source })?;
    let targets: Vec<GpuUuid> = recorded
        .iter()
        .map(|u| pairs.iter().find(|p| p.old == *u).map_or(*u, |p| p.new))
        .collect();
    for uuid in targets {
        if !present.contains(&uuid) {
            let present = if present.is_empty() {
                "no GPU".to_string()
            } else {
                present
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(CudaRestoreError::MissingGpu { pid, uuid, present });
        }
    }
    Ok(pairs)
}

impl GpuRestore {
    /// Restores and unlocks each CUDA process, now running as
    /// `host_pid_of(snapshot pid)`. The first failure is returned, and the
    /// caller kills the tree.
    pub fn resume(mut self, host_pid_of: impl Fn(i32) -> Option<i32>) -> Result<(), RestoreError> {
        for (pid, pairs) in &self.procs {
            let host_pid = host_pid_of(*pid).ok_or_else(|| RestoreError::State {
                pid: *pid,
                reason: "a CUDA process of the snapshot was not restored".into(),
            })?;
            self.client
                .resume(host_pid, pairs)
                .map_err(|source| CudaRestoreError::Resume {
                    pid: *pid,
                    host_pid,
                    source,
                })?;
            tracing::info!(pid, host_pid, gpus = pairs.len(), "cuda state restored");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(b: u8) -> GpuUuid {
        GpuUuid([b; 16])
    }

    #[test]
    fn same_gpus_need_no_pairs() {
        assert_eq!(plan(5, &[u(1)], &[], &[u(1), u(2)]).unwrap(), vec![]);
        // Nothing recorded, nothing present: left to the driver.
        assert_eq!(plan(5, &[], &[], &[]).unwrap(), vec![]);
    }

    #[test]
    fn a_missing_gpu_is_refused_with_the_fix() {
        let e = plan(5, &[u(1)], &[], &[u(2)]).unwrap_err().to_string();
        assert!(
            e.contains(&format!("ran on GPU {}", u(1)))
                && e.contains(&format!("it has {}", u(2)))
                && e.contains(&format!("--gpu-map {}=NEW", u(1))),
            "{e}"
        );
        let e = plan(5, &[u(1)], &[], &[]).unwrap_err().to_string();
        assert!(e.contains("it has no GPU"), "{e}");
    }

    #[test]
    fn a_map_is_completed_and_its_targets_checked() {
        let map = [GpuPair {
            old: u(1),
            new: u(3),
        }];
        let pairs = plan(5, &[u(1), u(2)], &map, &[u(2), u(3)]).unwrap();
        assert_eq!(
            pairs,
            vec![
                GpuPair {
                    old: u(1),
                    new: u(3)
                },
                GpuPair {
                    old: u(2),
                    new: u(2)
                }
            ]
        );
        // Onto a GPU that is not here.
        let e = plan(5, &[u(1)], &map, &[u(1)]).unwrap_err();
        assert!(matches!(e, CudaRestoreError::MissingGpu { uuid, .. } if uuid == u(3)));
    }

    #[test]
    fn a_snapshot_without_cuda_needs_no_driver() {
        let m = Manifest {
            created_unix: 0,
            snaprun_version: String::new(),
            kernel: String::new(),
            processes: vec![],
            zombies: vec![],
            attachments: vec![],
        };
        assert!(prepare(&m, &[]).unwrap().is_none());
    }
}
