//! [`Client`]: the checkpoint calls with the state machine enforced, errors
//! named, and the two sequences snaprun uses (suspend, resume) made safe.

use std::collections::HashMap;
use std::time::Duration;

use crate::driver::{name_of, CuError, Driver};
use crate::ffi::CUDA_ERROR_TIMEOUT;
use crate::libcuda::LibCuda;
use crate::state::{Op, ProcessState};
use crate::uuid::GpuPair;
use crate::Error;

/// How long a lock waits for the process's CUDA work by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The checkpoint calls on a [`Driver`], with each process's state tracked.
///
/// The state of a process is asked of the driver the first time the client
/// meets it, and after any failed call; after a successful call it is the
/// state the call leads to. A call that the state does not allow fails with
/// [`Error::BadState`] without reaching the driver.
pub struct Client<D: Driver> {
    driver: D,
    version: i32,
    known: HashMap<i32, ProcessState>,
}

impl Client<LibCuda> {
    /// Loads the system's driver ([`LibCuda::load_default`]).
    pub fn open() -> Result<Client<LibCuda>, Error> {
        Client::new(LibCuda::load_default()?)
    }
}

impl<D: Driver> Client<D> {
    /// A client on `driver`, refused with [`Error::NotAvailable`] when the
    /// driver is too old for the checkpoint calls.
    pub fn new(driver: D) -> Result<Client<D>, Error> {
        let version = driver.version().map_err(|e| Error::NotAvailable {
            reason: format!(
                "cuDriverGetVersion failed: {} ({})",
                name_of(&driver, e.0),
                e.0
            ),
        })?;
        crate::driver::check_version(version, driver.module_version().as_deref())?;
        Ok(Client {
            driver,
            version,
            known: HashMap::new(),
        })
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// `cuDriverGetVersion`'s value (`1000 * major + 10 * minor`).
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The process's state as the driver reports it now.
    pub fn state(&mut self, pid: i32) -> Result<ProcessState, Error> {
        let s = self
            .driver
            .get_state(pid)
            .map_err(|e| self.err(Some(pid), "cuCheckpointProcessGetState", e))?;
        self.known.insert(pid, s);
        Ok(s)
    }

    /// The state the client last saw, without asking the driver.
    pub fn known_state(&self, pid: i32) -> Option<ProcessState> {
        self.known.get(&pid).copied()
    }

    /// `cuCheckpointProcessLock`: Running → Locked, waiting at most
    /// `timeout` for the process's CUDA work ([`Error::Timeout`] after).
    pub fn lock(&mut self, pid: i32, timeout: Duration) -> Result<(), Error> {
        let ms = timeout.as_millis().clamp(1, u32::MAX as u128) as u32;
        self.step(pid, Op::Lock, |d| d.lock(pid, ms))
            .map_err(|e| match e {
                Error::Driver { code, .. } if code == CUDA_ERROR_TIMEOUT => Error::Timeout {
                    pid,
                    call: Op::Lock.call(),
                    timeout_ms: ms,
                },
                e => e,
            })
    }

    /// `cuCheckpointProcessCheckpoint`: Locked → Checkpointed.
    pub fn checkpoint(&mut self, pid: i32) -> Result<(), Error> {
        self.step(pid, Op::Checkpoint, |d| d.checkpoint(pid))
    }

    /// `cuCheckpointProcessRestore`: Checkpointed → Locked, onto the GPUs
    /// `pairs` name (all the process used: see [`crate::complete_map`]), or
    /// the same ones when `pairs` is empty.
    pub fn restore(&mut self, pid: i32, pairs: &[GpuPair]) -> Result<(), Error> {
        self.step(pid, Op::Restore, |d| d.restore(pid, pairs))
    }

    /// `cuCheckpointProcessUnlock`: Locked → Running.
    pub fn unlock(&mut self, pid: i32) -> Result<(), Error> {
        self.step(pid, Op::Unlock, |d| d.unlock(pid))
    }

    /// `cuCheckpointProcessGetRestoreThreadId`: the thread of the process
    /// that does the driver's restore work.
    pub fn restore_thread_id(&mut self, pid: i32) -> Result<i32, Error> {
        self.driver
            .restore_thread_id(pid)
            .map_err(|e| self.err(Some(pid), "cuCheckpointProcessGetRestoreThreadId", e))
    }

    /// Lock, then checkpoint: the process's GPU memory goes to its host
    /// memory and it lets go of the GPU. If the checkpoint fails the lock
    /// is undone, so the process runs on as before; if that unlock fails
    /// too, [`Error::StuckLocked`] says so.
    pub fn suspend(&mut self, pid: i32, lock_timeout: Duration) -> Result<(), Error> {
        self.lock(pid, lock_timeout)?;
        if let Err(cause) = self.checkpoint(pid) {
            return Err(self.undo_lock(pid, cause));
        }
        Ok(())
    }

    /// Restore (when checkpointed), then unlock: the process gets its GPU
    /// memory back and runs. A process that is only locked (restored but
    /// not unlocked) is unlocked. On failure the process is left as the
    /// driver left it: the caller ends it or tries again.
    pub fn resume(&mut self, pid: i32, pairs: &[GpuPair]) -> Result<(), Error> {
        if self.current(pid)? == ProcessState::Checkpointed {
            self.restore(pid, pairs)?;
        }
        self.unlock(pid)
    }

    /// After `cause` failed on a process this client locked: unlock it if
    /// the driver still reports it locked.
    fn undo_lock(&mut self, pid: i32, cause: Error) -> Error {
        match self.state(pid) {
            Ok(ProcessState::Locked) => match self.unlock(pid) {
                Ok(()) => {
                    tracing::warn!(pid, error = %cause, "cuda step failed; the process was unlocked again");
                    cause
                }
                Err(unlock) => Error::StuckLocked {
                    pid,
                    cause: Box::new(cause),
                    unlock: Box::new(unlock),
                },
            },
            Ok(state) => {
                tracing::warn!(pid, %state, error = %cause, "cuda step failed; the process is not locked");
                cause
            }
            Err(query) => {
                // The state is unknown: try the unlock anyway, which the
                // driver refuses harmlessly if there is nothing to unlock.
                match self.driver.unlock(pid) {
                    Ok(()) => cause,
                    Err(e) => Error::StuckLocked {
                        pid,
                        cause: Box::new(cause),
                        unlock: Box::new(Error::Driver {
                            pid: Some(pid),
                            call: Op::Unlock.call(),
                            code: e.0,
                            name: format!("{} (after {query})", name_of(&self.driver, e.0)),
                        }),
                    },
                }
            }
        }
    }

    /// The tracked state, asked of the driver when unknown.
    fn current(&mut self, pid: i32) -> Result<ProcessState, Error> {
        match self.known.get(&pid) {
            Some(&s) => Ok(s),
            None => self.state(pid),
        }
    }

    /// One state-changing call: checked against the state, made, tracked.
    fn step(
        &mut self,
        pid: i32,
        op: Op,
        call: impl FnOnce(&D) -> Result<(), CuError>,
    ) -> Result<(), Error> {
        let state = self.current(pid)?;
        if !op.allowed_from(state) {
            return Err(Error::BadState {
                pid,
                call: op.call(),
                state,
                want: op.from_state(),
            });
        }
        tracing::debug!(pid, call = op.call(), "cuda checkpoint call");
        match call(&self.driver) {
            Ok(()) => {
                self.known.insert(pid, op.to_state());
                Ok(())
            }
            Err(e) => {
                // The driver may have moved the process (to FAILED, say):
                // ask again next time.
                self.known.remove(&pid);
                Err(self.err(Some(pid), op.call(), e))
            }
        }
    }

    fn err(&self, pid: Option<i32>, call: &'static str, e: CuError) -> Error {
        Error::Driver {
            pid,
            call,
            code: e.0,
            name: name_of(&self.driver, e.0),
        }
    }
}
