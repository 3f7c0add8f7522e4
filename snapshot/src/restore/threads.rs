//! Tasks created inside the stub: threads after the first (an injected
//! `clone3` with `CLONE_THREAD`) and child processes (an injected fork,
//! `clone3` with `exit_signal` SIGCHLD), each with `set_tid` so that it gets
//! its original id. The kernel reports each (`PTRACE_O_TRACECLONE`,
//! `PTRACE_O_TRACEFORK`) and it stops at birth; its own attributes are then
//! set by syscalls injected into it.

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

/// A thread or process created for the restore: stopped, traced, and with
/// an injector that runs syscalls through the trampoline.
pub struct NewTask {
    /// Its id in the restorer's PID namespace (for ptrace).
    pub tid: i32,
    /// Its id in its own PID namespace (what the thread itself sees).
    pub inner_tid: i32,
    /// Whether it got the id it had at checkpoint.
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
) -> Result<NewTask, RestoreError> {
    create_task(leader, scratch, want, THREAD_FLAGS, 0, trampoline, stack)
}

/// Forks a child process with pid `want` from the stub of `parent` (which
/// must have `PTRACE_O_TRACEFORK` set). The child is a copy of the stub:
/// trampoline included, at the same address.
pub fn fork(
    parent: &mut Injector,
    scratch: &mut Scratch,
    want: i32,
    trampoline: u64,
    stack: u64,
) -> Result<NewTask, RestoreError> {
    create_task(
        parent,
        scratch,
        want,
        0,
        libc::SIGCHLD as u64,
        trampoline,
        stack,
    )
}

fn create_task(
    leader: &mut Injector,
    scratch: &mut Scratch,
    want: i32,
    flags: u64,
    exit_signal: u64,
    trampoline: u64,
    stack: u64,
) -> Result<NewTask, RestoreError> {
    let pid = leader.pid();
    let kind = if flags & libc::CLONE_THREAD as u64 != 0 {
        "thread"
    } else {
        "process"
    };
    let (ret, child) = clone_task(leader, scratch, flags, exit_signal, Some(want))?;
    let (ret, child) = if ret == -(libc::EEXIST as i64) {
        tracing::warn!(
            pid,
            id = want,
            kind,
            "id is in use; restoring under another id (glibc's cached tid will be stale)"
        );
        clone_task(leader, scratch, flags, exit_signal, None)?
    } else {
        (ret, child)
    };
    let what = format!("clone3 {kind} {want}");
    let inner_tid = leader.check(&what, ret)? as i32;
    // clone3 returns the id in the target's namespace, the clone event the
    // one in ours.
    let tid = child.ok_or_else(|| RestoreError::State {
        pid,
        reason: format!("{what}: clone returned {inner_tid} without a clone event"),
    })?;
    match ptrace::wait(tid).map_err(|source| RemoteError::Ptrace {
        pid: tid,
        op: "waitpid (new task)",
        source,
    })? {
        Stop::Signal { sig, .. } if sig == libc::SIGSTOP => {}
        Stop::Event { .. } => {}
        other => {
            return Err(RestoreError::State {
                pid,
                reason: format!("new {kind} {tid} did not stop at birth: {other:?}"),
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
    Ok(NewTask {
        tid,
        inner_tid,
        tid_kept: inner_tid == want,
        inj,
    })
}

fn clone_task(
    leader: &mut Injector,
    scratch: &mut Scratch,
    flags: u64,
    exit_signal: u64,
    want: Option<i32>,
) -> Result<(i64, Option<i32>), RestoreError> {
    let set_tid = match want {
        Some(tid) => scratch.put(leader, &tid.to_ne_bytes())?,
        None => 0,
    };
    let args = CloneArgs {
        flags,
        exit_signal,
        set_tid,
        set_tid_size: want.is_some() as u64,
        ..Default::default()
    };
    let at = scratch.put(leader, args.as_bytes())?;
    let r = leader.clone_syscall(
        &format!("clone3 {}", want.unwrap_or(0)),
        libc::SYS_clone3,
        &[at, std::mem::size_of::<CloneArgs>() as u64],
    );
    scratch.reset();
    Ok(r?)
}
