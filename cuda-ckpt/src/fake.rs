//! A fake [`Driver`] for the unit tests of [`crate::Client`]: a per-process
//! state machine that behaves as the documented driver does (a call in the
//! wrong state is `CUDA_ERROR_ILLEGAL_STATE`), a log of the calls made, and
//! failures scripted per call.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::driver::{CuError, Driver};
use crate::state::{Op, ProcessState};
use crate::uuid::GpuPair;

pub const ILLEGAL_STATE: u32 = 401;
pub const NOT_SUPPORTED: u32 = 801;
pub const INVALID_VALUE: u32 = 1;

/// One call as the fake saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    GetState(i32),
    Lock(i32, u32),
    Checkpoint(i32),
    Restore(i32, Vec<GpuPair>),
    Unlock(i32),
    RestoreTid(i32),
}

#[derive(Default)]
pub struct Fake {
    pub version: i32,
    pub states: RefCell<HashMap<i32, ProcessState>>,
    pub calls: RefCell<Vec<Call>>,
    /// The next call of this kind fails with this code (once); with
    /// `then`, the process is moved to that state as it fails.
    pub fail: RefCell<HashMap<Op, (u32, Option<ProcessState>)>>,
    pub fail_get_state: RefCell<Option<u32>>,
}

impl Fake {
    /// A 580-class driver (CUDA 13.0) with `pid` running CUDA.
    pub fn with_running(pid: i32) -> Fake {
        let f = Fake {
            version: 13000,
            ..Default::default()
        };
        f.states.borrow_mut().insert(pid, ProcessState::Running);
        f
    }

    pub fn fail_next(&self, op: Op, code: u32) {
        self.fail.borrow_mut().insert(op, (code, None));
    }

    pub fn fail_next_into(&self, op: Op, code: u32, state: ProcessState) {
        self.fail.borrow_mut().insert(op, (code, Some(state)));
    }

    pub fn state_of(&self, pid: i32) -> Option<ProcessState> {
        self.states.borrow().get(&pid).copied()
    }

    pub fn set_state(&self, pid: i32, s: ProcessState) {
        self.states.borrow_mut().insert(pid, s);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// The state-changing calls made (not the state queries).
    pub fn ops(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::GetState(_)))
            .collect()
    }

    fn op(&self, pid: i32, op: Op, call: Call) -> Result<(), CuError> {
        self.calls.borrow_mut().push(call);
        if let Some((code, then)) = self.fail.borrow_mut().remove(&op) {
            if let Some(s) = then {
                self.set_state(pid, s);
            }
            return Err(CuError(code));
        }
        let mut states = self.states.borrow_mut();
        let Some(s) = states.get_mut(&pid) else {
            return Err(CuError(INVALID_VALUE));
        };
        if *s != op.from_state() {
            return Err(CuError(ILLEGAL_STATE));
        }
        *s = op.to_state();
        Ok(())
    }
}

impl Driver for Fake {
    fn version(&self) -> Result<i32, CuError> {
        Ok(self.version)
    }

    fn get_state(&self, pid: i32) -> Result<ProcessState, CuError> {
        self.calls.borrow_mut().push(Call::GetState(pid));
        if let Some(code) = *self.fail_get_state.borrow() {
            return Err(CuError(code));
        }
        self.state_of(pid).ok_or(CuError(INVALID_VALUE))
    }

    fn lock(&self, pid: i32, timeout_ms: u32) -> Result<(), CuError> {
        self.op(pid, Op::Lock, Call::Lock(pid, timeout_ms))
    }

    fn checkpoint(&self, pid: i32) -> Result<(), CuError> {
        self.op(pid, Op::Checkpoint, Call::Checkpoint(pid))
    }

    fn restore(&self, pid: i32, pairs: &[GpuPair]) -> Result<(), CuError> {
        self.op(pid, Op::Restore, Call::Restore(pid, pairs.to_vec()))
    }

    fn unlock(&self, pid: i32) -> Result<(), CuError> {
        self.op(pid, Op::Unlock, Call::Unlock(pid))
    }

    fn restore_thread_id(&self, pid: i32) -> Result<i32, CuError> {
        self.calls.borrow_mut().push(Call::RestoreTid(pid));
        match self.state_of(pid) {
            Some(_) => Ok(pid + 1),
            None => Err(CuError(INVALID_VALUE)),
        }
    }
}
