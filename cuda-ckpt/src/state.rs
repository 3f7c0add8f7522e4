//! The driver's per-process checkpoint state machine and the four calls
//! that move a process through it:
//!
//! ```text
//!            lock              checkpoint
//!   Running ──────▶ Locked ──────────────▶ Checkpointed
//!      ▲              │  ▲                      │
//!      └──────────────┘  └──────────────────────┘
//!           unlock               restore
//! ```
//!
//! A call made from any other state is refused by [`crate::Client`] before
//! the driver sees it.

use std::fmt;

/// `CUprocessState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcessState {
    /// `CU_PROCESS_STATE_RUNNING`: CUDA calls go through (the default).
    Running,
    /// `CU_PROCESS_STATE_LOCKED`: CUDA calls block; submitted work is done.
    Locked,
    /// `CU_PROCESS_STATE_CHECKPOINTED`: GPU memory is in host memory and the
    /// process holds no GPU (no `/dev/nvidia*` fds).
    Checkpointed,
    /// `CU_PROCESS_STATE_FAILED`: an uncorrectable error during a
    /// checkpoint or restore.
    Failed,
    /// `CU_PROCESS_STATE_CHECKPOINTING` (newer drivers): a checkpoint is
    /// under way.
    Checkpointing,
    /// `CU_PROCESS_STATE_RESTORING` (newer drivers): a restore is under way.
    Restoring,
    /// A value this build does not know.
    Other(u32),
}

impl ProcessState {
    /// From the driver's `CUprocessState` value.
    pub fn from_raw(v: u32) -> ProcessState {
        match v {
            0 => ProcessState::Running,
            1 => ProcessState::Locked,
            2 => ProcessState::Checkpointed,
            3 => ProcessState::Failed,
            4 => ProcessState::Checkpointing,
            5 => ProcessState::Restoring,
            other => ProcessState::Other(other),
        }
    }

    /// The driver's value.
    pub fn raw(self) -> u32 {
        match self {
            ProcessState::Running => 0,
            ProcessState::Locked => 1,
            ProcessState::Checkpointed => 2,
            ProcessState::Failed => 3,
            ProcessState::Checkpointing => 4,
            ProcessState::Restoring => 5,
            ProcessState::Other(v) => v,
        }
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProcessState::Running => f.write_str("running"),
            ProcessState::Locked => f.write_str("locked"),
            ProcessState::Checkpointed => f.write_str("checkpointed"),
            ProcessState::Failed => f.write_str("failed"),
            ProcessState::Checkpointing => f.write_str("checkpointing"),
            ProcessState::Restoring => f.write_str("restoring"),
            ProcessState::Other(v) => write!(f, "unknown state {v}"),
        }
    }
}

/// One of the four calls that change a process's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Lock,
    Checkpoint,
    Restore,
    Unlock,
}

impl Op {
    /// The state the process must be in for this call.
    pub fn from_state(self) -> ProcessState {
        match self {
            Op::Lock => ProcessState::Running,
            Op::Checkpoint => ProcessState::Locked,
            Op::Restore => ProcessState::Checkpointed,
            Op::Unlock => ProcessState::Locked,
        }
    }

    /// The state the call leaves the process in when it succeeds.
    pub fn to_state(self) -> ProcessState {
        match self {
            Op::Lock => ProcessState::Locked,
            Op::Checkpoint => ProcessState::Checkpointed,
            Op::Restore => ProcessState::Locked,
            Op::Unlock => ProcessState::Running,
        }
    }

    /// The driver function behind it.
    pub fn call(self) -> &'static str {
        match self {
            Op::Lock => "cuCheckpointProcessLock",
            Op::Checkpoint => "cuCheckpointProcessCheckpoint",
            Op::Restore => "cuCheckpointProcessRestore",
            Op::Unlock => "cuCheckpointProcessUnlock",
        }
    }

    /// Whether the call is legal from `state`.
    pub fn allowed_from(self, state: ProcessState) -> bool {
        state == self.from_state()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_OPS: [Op; 4] = [Op::Lock, Op::Checkpoint, Op::Restore, Op::Unlock];
    const ALL_STATES: [ProcessState; 7] = [
        ProcessState::Running,
        ProcessState::Locked,
        ProcessState::Checkpointed,
        ProcessState::Failed,
        ProcessState::Checkpointing,
        ProcessState::Restoring,
        ProcessState::Other(77),
    ];

    #[test]
    fn raw_values_round_trip() {
        for s in ALL_STATES {
            assert_eq!(ProcessState::from_raw(s.raw()), s);
        }
        assert_eq!(ProcessState::from_raw(2), ProcessState::Checkpointed);
    }

    #[test]
    fn exactly_the_documented_transitions_are_legal() {
        let legal: Vec<(ProcessState, Op)> = ALL_STATES
            .iter()
            .flat_map(|&s| ALL_OPS.iter().map(move |&op| (s, op)))
            .filter(|&(s, op)| op.allowed_from(s))
            .collect();
        assert_eq!(
            legal,
            vec![
                (ProcessState::Running, Op::Lock),
                (ProcessState::Locked, Op::Checkpoint),
                (ProcessState::Locked, Op::Unlock),
                (ProcessState::Checkpointed, Op::Restore),
            ]
        );
    }

    #[test]
    fn a_full_cycle_comes_back_to_running() {
        let mut s = ProcessState::Running;
        for op in [Op::Lock, Op::Checkpoint, Op::Restore, Op::Unlock] {
            assert!(op.allowed_from(s), "{op:?} from {s}");
            s = op.to_state();
        }
        assert_eq!(s, ProcessState::Running);
    }
}
