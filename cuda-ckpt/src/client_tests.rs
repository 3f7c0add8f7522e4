//! [`Client`] against the fake driver: the state machine, the refusals
//! before the driver is called, and every error path of suspend/resume.

use std::time::Duration;

use crate::fake::{Call, Fake, ILLEGAL_STATE, NOT_SUPPORTED};
use crate::{Client, Error, GpuPair, GpuUuid, Op, ProcessState};

const PID: i32 = 4242;
const T: Duration = Duration::from_millis(2500);

fn client() -> Client<Fake> {
    Client::new(Fake::with_running(PID)).expect("a 13.0 driver is new enough")
}

#[test]
fn the_full_cycle_walks_the_state_machine() {
    let mut c = client();
    assert_eq!(c.state(PID).unwrap(), ProcessState::Running);
    c.lock(PID, T).unwrap();
    assert_eq!(c.known_state(PID), Some(ProcessState::Locked));
    c.checkpoint(PID).unwrap();
    assert_eq!(c.known_state(PID), Some(ProcessState::Checkpointed));
    c.restore(PID, &[]).unwrap();
    assert_eq!(c.known_state(PID), Some(ProcessState::Locked));
    c.unlock(PID).unwrap();
    assert_eq!(c.known_state(PID), Some(ProcessState::Running));
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
    assert_eq!(
        c.driver().ops(),
        vec![
            Call::Lock(PID, 2500),
            Call::Checkpoint(PID),
            Call::Restore(PID, vec![]),
            Call::Unlock(PID),
        ]
    );
    // One state query (the first contact); the rest was tracked.
    let queries = c
        .driver()
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::GetState(_)))
        .count();
    assert_eq!(queries, 1);
}

#[test]
fn illegal_calls_are_refused_before_the_driver() {
    // From Running, only lock is legal.
    for op in [Op::Checkpoint, Op::Restore, Op::Unlock] {
        let mut c = client();
        let r = match op {
            Op::Checkpoint => c.checkpoint(PID),
            Op::Restore => c.restore(PID, &[]),
            Op::Unlock => c.unlock(PID),
            Op::Lock => unreachable!(),
        };
        match r.unwrap_err() {
            Error::BadState {
                pid,
                call,
                state,
                want,
            } => {
                assert_eq!((pid, call, state), (PID, op.call(), ProcessState::Running));
                assert_eq!(want, op.from_state());
            }
            e => panic!("{op:?}: {e}"),
        }
        assert_eq!(c.driver().ops(), vec![], "{op:?} reached the driver");
    }
    // From Checkpointed: lock, checkpoint and unlock are refused.
    let mut c = client();
    c.suspend(PID, T).unwrap();
    let before = c.driver().calls().len();
    assert!(matches!(c.lock(PID, T), Err(Error::BadState { .. })));
    assert!(matches!(c.checkpoint(PID), Err(Error::BadState { .. })));
    let e = c.unlock(PID).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("pid {PID}: cuCheckpointProcessUnlock needs a locked CUDA process, but its state is checkpointed")
    );
    assert_eq!(
        c.driver().calls().len(),
        before,
        "no call reached the driver"
    );
}

#[test]
fn a_failed_process_is_refused_everything() {
    let mut c = client();
    c.driver().set_state(PID, ProcessState::Failed);
    assert!(matches!(
        c.lock(PID, T),
        Err(Error::BadState {
            state: ProcessState::Failed,
            ..
        })
    ));
    assert!(matches!(c.resume(PID, &[]), Err(Error::BadState { .. })));
    assert_eq!(c.driver().ops(), vec![]);
}

#[test]
fn suspend_unlocks_when_the_checkpoint_fails() {
    let mut c = client();
    c.driver().fail_next(Op::Checkpoint, NOT_SUPPORTED);
    let e = c.suspend(PID, T).unwrap_err();
    match &e {
        Error::Driver {
            pid,
            call,
            code,
            name,
        } => {
            assert_eq!(*pid, Some(PID));
            assert_eq!(*call, "cuCheckpointProcessCheckpoint");
            assert_eq!(*code, NOT_SUPPORTED);
            assert_eq!(name, "CUDA_ERROR_NOT_SUPPORTED");
        }
        e => panic!("{e}"),
    }
    assert_eq!(
        e.to_string(),
        format!("pid {PID}: cuCheckpointProcessCheckpoint failed: CUDA_ERROR_NOT_SUPPORTED (801)")
    );
    assert_eq!(
        c.driver().ops(),
        vec![
            Call::Lock(PID, 2500),
            Call::Checkpoint(PID),
            Call::Unlock(PID)
        ]
    );
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
    assert_eq!(c.known_state(PID), Some(ProcessState::Running));
}

#[test]
fn suspend_says_so_when_the_process_stays_locked() {
    let mut c = client();
    c.driver().fail_next(Op::Checkpoint, NOT_SUPPORTED);
    c.driver().fail_next(Op::Unlock, ILLEGAL_STATE);
    let e = c.suspend(PID, T).unwrap_err();
    assert!(matches!(e, Error::StuckLocked { pid: PID, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("cuCheckpointProcessCheckpoint failed: CUDA_ERROR_NOT_SUPPORTED")
            && msg.contains("cuCheckpointProcessUnlock failed: CUDA_ERROR_ILLEGAL_STATE")
            && msg.contains("stay blocked"),
        "{msg}"
    );
}

#[test]
fn suspend_does_not_unlock_a_process_the_driver_moved_on() {
    // The checkpoint fails and the driver reports the process FAILED: there
    // is nothing to unlock, and the error is the checkpoint's.
    let mut c = client();
    c.driver()
        .fail_next_into(Op::Checkpoint, NOT_SUPPORTED, ProcessState::Failed);
    let e = c.suspend(PID, T).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Driver {
                code: NOT_SUPPORTED,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        c.driver().ops(),
        vec![Call::Lock(PID, 2500), Call::Checkpoint(PID)]
    );
    assert_eq!(c.known_state(PID), Some(ProcessState::Failed));
}

#[test]
fn suspend_tries_the_unlock_when_the_state_cannot_be_read() {
    let mut c = client();
    c.state(PID).unwrap();
    c.driver().fail_next(Op::Checkpoint, NOT_SUPPORTED);
    *c.driver().fail_get_state.borrow_mut() = Some(NOT_SUPPORTED);
    let e = c.suspend(PID, T).unwrap_err();
    assert!(matches!(e, Error::Driver { .. }), "{e}");
    assert_eq!(c.driver().ops().last(), Some(&Call::Unlock(PID)));
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
}

#[test]
fn a_lock_timeout_is_a_timeout_and_goes_no_further() {
    let mut c = client();
    c.driver()
        .fail_next(Op::Lock, crate::ffi::CUDA_ERROR_TIMEOUT);
    let e = c.suspend(PID, Duration::from_millis(1500)).unwrap_err();
    match e {
        Error::Timeout {
            pid,
            call,
            timeout_ms,
        } => {
            assert_eq!(
                (pid, call, timeout_ms),
                (PID, "cuCheckpointProcessLock", 1500)
            );
        }
        e => panic!("{e}"),
    }
    assert_eq!(c.driver().ops(), vec![Call::Lock(PID, 1500)]);
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
}

#[test]
fn the_lock_timeout_is_never_zero() {
    // 0 would mean "wait for ever" to the driver.
    let mut c = client();
    c.lock(PID, Duration::ZERO).unwrap();
    assert_eq!(c.driver().ops(), vec![Call::Lock(PID, 1)]);
}

#[test]
fn resume_restores_with_the_gpu_map_then_unlocks() {
    let mut c = client();
    c.suspend(PID, T).unwrap();
    let pair = GpuPair {
        old: GpuUuid([1; 16]),
        new: GpuUuid([2; 16]),
    };
    c.resume(PID, &[pair]).unwrap();
    assert_eq!(
        c.driver().ops()[2..],
        [Call::Restore(PID, vec![pair]), Call::Unlock(PID)]
    );
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
}

#[test]
fn resume_of_a_locked_process_only_unlocks() {
    let mut c = client();
    c.driver().set_state(PID, ProcessState::Locked);
    c.resume(PID, &[]).unwrap();
    assert_eq!(c.driver().ops(), vec![Call::Unlock(PID)]);
}

#[test]
fn resume_of_a_running_process_is_refused() {
    let mut c = client();
    let e = c.resume(PID, &[]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::BadState {
                state: ProcessState::Running,
                want: ProcessState::Locked,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(c.driver().ops(), vec![]);
}

#[test]
fn a_failed_restore_is_reported_and_not_followed_by_an_unlock() {
    let mut c = client();
    c.suspend(PID, T).unwrap();
    c.driver().fail_next(Op::Restore, 2);
    let e = c.resume(PID, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("pid {PID}: cuCheckpointProcessRestore failed: CUDA_ERROR_OUT_OF_MEMORY (2)")
    );
    assert_eq!(c.driver().ops().last(), Some(&Call::Restore(PID, vec![])));
    // The state is asked again after a failure.
    assert_eq!(c.known_state(PID), None);
    assert_eq!(c.state(PID).unwrap(), ProcessState::Checkpointed);
    // A second try works.
    c.resume(PID, &[]).unwrap();
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Running));
}

#[test]
fn a_failed_unlock_after_restore_is_reported() {
    let mut c = client();
    c.suspend(PID, T).unwrap();
    c.driver().fail_next(Op::Unlock, 999);
    let e = c.resume(PID, &[]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("cuCheckpointProcessUnlock failed: CUDA_ERROR_UNKNOWN (999)"),
        "{e}"
    );
    assert_eq!(c.driver().state_of(PID), Some(ProcessState::Locked));
}

#[test]
fn a_process_unknown_to_the_driver_is_a_driver_error() {
    let mut c = client();
    let e = c.lock(99, T).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pid 99: cuCheckpointProcessGetState failed: CUDA_ERROR_INVALID_VALUE (1)"
    );
}

#[test]
fn unknown_codes_are_named_by_number() {
    let mut c = client();
    c.driver().fail_next(Op::Lock, 12345);
    let e = c.lock(PID, T).unwrap_err();
    assert!(
        e.to_string().contains("unknown CUresult 12345 (12345)"),
        "{e}"
    );
}

#[test]
fn an_old_driver_is_not_available() {
    let fake = Fake {
        version: 12020,
        ..Default::default()
    };
    match Client::new(fake) {
        Err(Error::NotAvailable { reason }) => {
            assert!(
                reason.contains("CUDA 12.2") && reason.contains("550"),
                "{reason}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a 12.2 driver was accepted"),
    }
}

#[test]
fn the_restore_thread_id_is_passed_through() {
    let mut c = client();
    assert_eq!(c.restore_thread_id(PID).unwrap(), PID + 1);
}
