//! The process tree: every process after the first is forked from its
//! parent's stub (so parent links are the original ones), zombies are
//! forked and made to exit with their status, and sessions and process
//! groups are rebuilt; then each process is morphed like the first.

use std::collections::HashSet;

use crate::hex;
use crate::image::{Manifest, ProcessImage, Zombie};
use crate::sys::ptrace::{self, Stop};
use crate::sys::remote::{InjectMode, Injector, Remote, RemoteError, Scratch};
use crate::sys::PAGE_SIZE;

use super::stub::{Stub, TRAMPOLINE_LEN};
use super::threads::{self, NewTask};
use super::{inner_id, resume_thread, RestoreError};

/// One process of the tree being restored: its image, its stub (stopped,
/// traced) and the threads created in it so far.
pub struct Proc<'a> {
    pub image: &'a ProcessImage,
    /// Its pid in the restorer's PID namespace (for ptrace).
    pub pid: i32,
    /// Its pid as it sees it.
    pub inner_pid: i32,
    pub trampoline: u64,
    pub inj: Injector,
    pub scratch: Scratch,
    /// The threads after the leader, in the image's order.
    pub threads: Vec<NewTask>,
    xsaves: Vec<Vec<u8>>,
    pid_kept: bool,
}

impl<'a> Proc<'a> {
    pub fn new(
        image: &'a ProcessImage,
        pid: i32,
        inj: Injector,
        trampoline: u64,
    ) -> Result<Self, RestoreError> {
        let xsaves = image
            .threads
            .iter()
            .map(|t| {
                hex::decode(&t.xsave).map_err(|e| RestoreError::State {
                    pid: image.pid,
                    reason: format!("thread {}: bad XSAVE area in the manifest: {e}", t.tid),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner_pid = inner_id(pid)?;
        Ok(Self {
            image,
            pid,
            inner_pid,
            trampoline,
            inj,
            scratch: Scratch::new(trampoline + PAGE_SIZE, TRAMPOLINE_LEN - 2 * PAGE_SIZE),
            threads: Vec::new(),
            xsaves,
            pid_kept: inner_pid == image.pid,
        })
    }

    /// Whether the process and every thread got its original id.
    pub fn ids_kept(&self) -> bool {
        self.pid_kept && self.threads.iter().all(|t| t.tid_kept)
    }

    /// Removes the trampoline (the last injected call, stopped at syscall
    /// exit so that it never returns to the page it removed) and lets every
    /// thread run, the leader last.
    pub fn resume(&mut self) -> Result<(), RestoreError> {
        self.inj.set_mode(InjectMode::SyscallStops);
        self.inj.syscall(
            "munmap(trampoline)",
            libc::SYS_munmap,
            &[self.trampoline, TRAMPOLINE_LEN],
        )?;
        let tids: Vec<i32> = std::iter::once(self.pid)
            .chain(self.threads.iter().map(|t| t.tid))
            .collect();
        for ((th, xsave), &tid) in self.image.threads.iter().zip(&self.xsaves).zip(&tids).rev() {
            resume_thread(tid, th, xsave)?;
        }
        Ok(())
    }
}

fn parent_of<'p, 'a>(
    procs: &'p mut [Proc<'a>],
    child: i32,
    ppid: i32,
) -> Result<&'p mut Proc<'a>, RestoreError> {
    procs
        .iter_mut()
        .find(|p| p.image.pid == ppid)
        .ok_or_else(|| RestoreError::State {
            pid: child,
            reason: format!("its parent {ppid} is not restored before it"),
        })
}

/// Forks the stub of every process after the first from its parent's
/// stub, in the manifest's order (each process after its parent).
pub fn fork_children<'a>(
    procs: &mut Vec<Proc<'a>>,
    m: &'a Manifest,
    stub: &mut Stub,
    trampoline: u64,
    stack: u64,
) -> Result<(), RestoreError> {
    for p in &m.processes[1..] {
        let parent = parent_of(procs, p.pid, p.ppid)?;
        let task = threads::fork(
            &mut parent.inj,
            &mut parent.scratch,
            p.pid,
            trampoline,
            stack,
        )?;
        stub.add_member(task.tid);
        let kept = task.tid_kept;
        let mut proc = Proc::new(p, task.tid, task.inj, trampoline)?;
        proc.pid_kept = kept;
        procs.push(proc);
    }
    Ok(())
}

/// Forks each zombie from its parent's stub and makes it exit with its
/// recorded status; the SIGCHLD that brings to the parent is taken back
/// (the original parent had it already, or it is among its recorded
/// pending signals).
pub fn make_zombies(
    procs: &mut [Proc],
    zombies: &[Zombie],
    trampoline: u64,
    stack: u64,
) -> Result<(), RestoreError> {
    for z in zombies {
        let parent = parent_of(procs, z.pid, z.ppid)?;
        let mut task = threads::fork(
            &mut parent.inj,
            &mut parent.scratch,
            z.pid,
            trampoline,
            stack,
        )?;
        let tid = task.tid;
        let ptrace_err = |op: &'static str| {
            move |source| {
                RestoreError::Remote(RemoteError::Ptrace {
                    pid: tid,
                    op,
                    source,
                })
            }
        };
        let died = if libc::WIFEXITED(z.exit_status) {
            let code = libc::WEXITSTATUS(z.exit_status);
            task.inj
                .run_to_exit("exit_group (zombie)", libc::SYS_exit_group, &[code as u64])?
        } else {
            let sig = libc::WTERMSIG(z.exit_status);
            // No core file for a zombie that died of a core-dumping signal.
            let none = libc::rlimit64 {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: prlimit64 on our own traced task with a live struct.
            unsafe { libc::prlimit64(tid, libc::RLIMIT_CORE, &none, std::ptr::null_mut()) };
            let dfl = [0u64; 4];
            let raw: Vec<u8> = dfl.iter().flat_map(|w| w.to_ne_bytes()).collect();
            let at = task.scratch_put(&raw)?;
            task.inj.syscall(
                &format!("rt_sigaction({sig}, SIG_DFL) (zombie)"),
                libc::SYS_rt_sigaction,
                &[sig as u64, at, 0, 8],
            )?;
            ptrace::set_sigmask(tid, 0).map_err(ptrace_err("SETSIGMASK"))?;
            // SAFETY: tgkill to our own traced task; no memory involved.
            unsafe { libc::syscall(libc::SYS_tgkill, tid, tid, sig) };
            task.inj.deliver_until_exit("zombie's signal", sig)?
        };
        let expect = if libc::WIFEXITED(z.exit_status) {
            Stop::Exited(libc::WEXITSTATUS(z.exit_status))
        } else {
            Stop::Killed(libc::WTERMSIG(z.exit_status))
        };
        if died != expect {
            return Err(RestoreError::State {
                pid: z.pid,
                reason: format!("zombie ended as {died:?}, want {expect:?}"),
            });
        }
        // Taking the SIGCHLD back: rt_sigtimedwait with a zero timeout.
        let set = parent.scratch.put(
            &mut parent.inj,
            &(1u64 << (libc::SIGCHLD - 1)).to_ne_bytes(),
        )?;
        let ts = parent.scratch.put(&mut parent.inj, &[0u8; 16])?;
        parent.inj.raw_syscall(
            "rt_sigtimedwait(SIGCHLD)",
            libc::SYS_rt_sigtimedwait,
            &[set, 0, ts, 8],
        )?;
        parent.scratch.reset();
    }
    Ok(())
}

/// Sessions and process groups: session leaders call `setsid`, group
/// leaders and members `setpgid`, with the original ids (which are the
/// ids inside the namespace). The first process keeps the session the
/// stub made for it. A group whose leader is not in the tree cannot be
/// joined: the process stays in its parent's, with a warning.
pub fn set_sessions(procs: &mut [Proc]) -> Result<(), RestoreError> {
    let pids: HashSet<i32> = procs.iter().map(|p| p.image.pid).collect();
    for p in procs.iter_mut().skip(1) {
        let (pid, sid) = (p.image.pid, p.image.sid);
        if sid == pid {
            p.inj.syscall("setsid", libc::SYS_setsid, &[])?;
        }
    }
    // Group leaders before members.
    let mut order: Vec<usize> = (1..procs.len()).collect();
    order.sort_by_key(|&i| procs[i].image.pgid != procs[i].image.pid);
    for i in order {
        let p = &mut procs[i];
        let (pid, pgid, sid) = (p.image.pid, p.image.pgid, p.image.sid);
        if sid == pid {
            continue;
        }
        if pgid == pid || pids.contains(&pgid) {
            p.inj.syscall(
                &format!("setpgid(0, {pgid})"),
                libc::SYS_setpgid,
                &[0, pgid as u64],
            )?;
        } else {
            tracing::warn!(
                pid,
                pgid,
                "process group leader not in the snapshot; the process stays in its parent's group"
            );
        }
    }
    Ok(())
}

impl NewTask {
    fn scratch_put(&mut self, data: &[u8]) -> Result<u64, RemoteError> {
        // The stub's scratch area, right after the trampoline's code page:
        // this task is a fresh copy of its parent's stub.
        let at = self.inj.syscall_ip() + PAGE_SIZE;
        self.inj.write_mem(at, data)?;
        Ok(at)
    }
}
