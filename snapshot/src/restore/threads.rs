//! Threads after the first: each is created inside the process by an
//! injected `clone3` with `CLONE_THREAD` and `set_tid` (so it gets its
//! original thread id), is reported by `PTRACE_O_TRACECLONE` and stops at
//! birth; its own attributes are then set by syscalls injected into it.

use crate::sys::ptrace::{self, Stop};
use crate::sys::remote::{InjectMode, Injector, Remote, RemoteError, Scratch};

use super::stub::CloneArgs;
use super::RestoreError;

/// What a thread shares with the rest of its process, as pthread_create
/// asks for it.
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// A thread created for the restore: stopped, traced, and with an injector
/// that runs syscalls through the trampoline.
pub struct NewThread {
    /// Its id in the restorer's PID namespace (for ptrace).
    pub tid: i32,
    /// Its id in its own PID namespace (what the thread itself sees).
    pub inner_tid: i32,
    /// Whether it got the thread id it had at checkpoint.
    pub tid_kept: bool,
    pub inj: Injector,
}

/// Creates a thread with id `want` in the process of `leader` (which must
/// have `PTRACE_O_TRACECLONE` set). When the id is taken the thread gets
/// another one, with a warning: glibc's cached id is then stale.
pub fn create(
    leader: &mut Injector,
    scratch: &mut Scratch,
    want: i32,
    trampoline: u64,
    stack: u64,
) -> Result<NewThread, RestoreError> {
    let pid = leader.pid();
    let (ret, child) = clone_thread(leader, scratch, Some(want))?;
    let (ret, child) = if ret == -(libc::EEXIST as i64) {
        tracing::warn!(
            pid,
            tid = want,
            "thread id is in use; restoring the thread under another id (glibc's cached tid will be stale)"
        );
        clone_thread(leader, scratch, None)?
    } else {
        (ret, child)
    };
    let what = format!("clone3 thread {want}");
    let inner_tid = leader.check(&what, ret)? as i32;
    // clone3 returns the id in the target's namespace, the clone event the
    // one in ours.
    let tid = child.ok_or_else(|| RestoreError::State {
        pid,
        reason: format!("{what}: clone returned {inner_tid} without a clone event"),
    })?;
    match ptrace::wait(tid).map_err(|source| RemoteError::Ptrace {
        pid: tid,
        op: "waitpid (new thread)",
        source,
    })? {
        Stop::Signal { sig, .. } if sig == libc::SIGSTOP => {}
        Stop::Event { .. } => {}
        other => {
            return Err(RestoreError::State {
                pid,
                reason: format!("new thread {tid} did not stop at birth: {other:?}"),
            })
        }
    }
    let regs = ptrace::get_regs(tid).map_err(|source| RemoteError::Ptrace {
        pid: tid,
        op: "GETREGS",
        source,
    })?;
    let mut inj = Injector::new(tid, regs, trampoline, InjectMode::Trap)?;
    inj.set_stack(stack);
    Ok(NewThread {
        tid,
        inner_tid,
        tid_kept: inner_tid == want,
        inj,
    })
}

fn clone_thread(
    leader: &mut Injector,
    scratch: &mut Scratch,
    want: Option<i32>,
) -> Result<(i64, Option<i32>), RestoreError> {
    let set_tid = match want {
        Some(tid) => scratch.put(leader, &tid.to_ne_bytes())?,
        None => 0,
    };
    let args = CloneArgs {
        flags: THREAD_FLAGS,
        set_tid,
        set_tid_size: want.is_some() as u64,
        ..Default::default()
    };
    let at = scratch.put(leader, args.as_bytes())?;
    let r = leader.clone_syscall(
        &format!("clone3 thread {}", want.unwrap_or(0)),
        libc::SYS_clone3,
        &[at, std::mem::size_of::<CloneArgs>() as u64],
    );
    scratch.reset();
    Ok(r?)
}
