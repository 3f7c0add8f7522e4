//! Freezing the target with `PTRACE_SEIZE` + `PTRACE_INTERRUPT`, every
//! thread of it, and letting it go again exactly as it was.

use crate::sys::mem::ProcMem;
use crate::sys::ptrace::{self, Stop};
use crate::sys::Regs;

use super::DumpError;

/// A seized, stopped thread. Dropping it without [`Frozen::kill`] resumes
/// the thread with the registers and signal mask it had when frozen, so an
/// error anywhere in the dump leaves the source running as it was.
pub struct Frozen {
    pub pid: i32,
    pub regs: Regs,
    pub sigmask: u64,
    released: bool,
}

impl Frozen {
    pub fn seize(pid: i32) -> Result<Self, DumpError> {
        let ptrace_err = |what: &'static str| {
            move |source: std::io::Error| match source.raw_os_error() {
                Some(libc::ESRCH) => DumpError::NoSuchProcess { pid },
                _ => DumpError::Ptrace { pid, what, source },
            }
        };
        ptrace::seize(pid, ptrace::PTRACE_O_TRACESYSGOOD).map_err(ptrace_err("SEIZE"))?;
        let mut frozen = Self {
            pid,
            regs: Regs::default(),
            sigmask: 0,
            // Nothing to undo until the thread has stopped.
            released: true,
        };
        ptrace::interrupt(pid).map_err(ptrace_err("INTERRUPT"))?;
        for _ in 0..64 {
            match ptrace::wait(pid).map_err(ptrace_err("waitpid"))? {
                Stop::Event { sig } if sig == libc::SIGTRAP => {
                    frozen.released = false;
                    frozen.regs = ptrace::get_regs(pid).map_err(ptrace_err("GETREGS"))?;
                    frozen.sigmask = ptrace::get_sigmask(pid).map_err(ptrace_err("GETSIGMASK"))?;
                    return Ok(frozen);
                }
                Stop::Event { sig } => {
                    let _ = ptrace::detach(pid, 0);
                    return Err(DumpError::State {
                        pid,
                        reason: format!(
                            "the process is stopped by job control (signal {sig}); continue it first"
                        ),
                    });
                }
                // A signal raced with the interrupt: deliver it as it would
                // have been; the interrupt trap stays pending.
                Stop::Signal { sig, .. } => ptrace::cont(pid, sig).map_err(ptrace_err("CONT"))?,
                Stop::Syscall => ptrace::cont(pid, 0).map_err(ptrace_err("CONT"))?,
                Stop::Exited(_) | Stop::Killed(_) => return Err(DumpError::NoSuchProcess { pid }),
            }
        }
        let _ = ptrace::detach(pid, 0);
        Err(DumpError::State {
            pid,
            reason: "did not stop: signals keep arriving".into(),
        })
    }

    fn do_release(&mut self) -> Result<(), DumpError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let pid = self.pid;
        let err = |what| move |source| DumpError::Ptrace { pid, what, source };
        ptrace::set_sigmask(pid, self.sigmask).map_err(err("SETSIGMASK"))?;
        ptrace::set_regs(pid, &self.regs).map_err(err("SETREGS"))?;
        ptrace::detach(pid, 0).map_err(err("DETACH"))
    }

    /// The address of a `syscall` instruction to inject through: the one
    /// the thread is stopped in, or one in the vDSO.
    pub fn find_syscall_insn(&self, vdso: Option<(u64, u64)>) -> Result<u64, DumpError> {
        let mem = ProcMem::open(self.pid).map_err(|source| DumpError::Proc {
            pid: self.pid,
            path: format!("/proc/{}/mem", self.pid),
            source,
        })?;
        if (self.regs.orig_rax as i64) >= 0 && self.regs.rip >= 2 {
            let mut insn = [0u8; 2];
            if mem.read_exact_at(self.regs.rip - 2, &mut insn).is_ok() && insn == [0x0f, 0x05] {
                return Ok(self.regs.rip - 2);
            }
        }
        if let Some((start, end)) = vdso {
            let mut text = vec![0u8; (end - start) as usize];
            if mem.read_exact_at(start, &mut text).is_ok() {
                if let Some(off) = find_vdso_syscall(&text) {
                    return Ok(start + off as u64);
                }
            }
        }
        Err(DumpError::State {
            pid: self.pid,
            reason: "no syscall instruction found to run injected syscalls through".into(),
        })
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Err(e) = self.do_release() {
            tracing::warn!(pid = self.pid, error = %e, "could not resume the process");
        }
    }
}

/// Rounds of "list the threads, freeze the new ones" before giving up on a
/// process that creates threads faster than they can be frozen.
const FREEZE_ROUNDS: usize = 100;

/// Every thread of a process, seized and stopped; the thread-group leader
/// first. Dropping it without [`FrozenProcess::kill`] resumes every thread
/// as it was.
pub struct FrozenProcess {
    pub pid: i32,
    pub threads: Vec<Frozen>,
}

impl FrozenProcess {
    /// Freezes every thread of `pid`. A thread can only create threads while
    /// it runs, so the task list is read again after each round of freezing
    /// until a round finds no new thread: then none can appear any more.
    pub fn seize(pid: i32) -> Result<Self, DumpError> {
        let mut frozen = Self {
            pid,
            threads: Vec::new(),
        };
        for _ in 0..FREEZE_ROUNDS {
            let new: Vec<i32> = list_threads(pid)?
                .into_iter()
                .filter(|tid| !frozen.threads.iter().any(|t| t.pid == *tid))
                .collect();
            if new.is_empty() {
                if frozen.threads.first().map(|t| t.pid) != Some(pid) {
                    return Err(DumpError::NoSuchProcess { pid });
                }
                return Ok(frozen);
            }
            for tid in new {
                match Frozen::seize(tid) {
                    Ok(t) if tid == pid => frozen.threads.insert(0, t),
                    Ok(t) => frozen.threads.push(t),
                    // A thread that exited between the listing and the
                    // seize is simply not part of the snapshot.
                    Err(DumpError::NoSuchProcess { .. }) if tid != pid => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(DumpError::State {
            pid,
            reason: format!(
                "new threads kept appearing while freezing ({} frozen after {FREEZE_ROUNDS} rounds)",
                frozen.threads.len()
            ),
        })
    }

    pub fn leader(&self) -> &Frozen {
        &self.threads[0]
    }

    /// Resumes every thread unchanged and detaches. Every thread is let go
    /// even when one fails; the first error is returned.
    pub fn release(mut self) -> Result<(), DumpError> {
        let mut first = Ok(());
        for t in &mut self.threads {
            let r = t.do_release();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Ends the process (SIGKILL) and waits until the kernel has taken
    /// every thread down.
    pub fn kill(mut self) -> Result<(), DumpError> {
        for t in &mut self.threads {
            t.released = true;
        }
        // SAFETY: kill with a pid we hold traced; no memory involved.
        if unsafe { libc::kill(self.pid, libc::SIGKILL) } != 0 {
            return Err(DumpError::Ptrace {
                pid: self.pid,
                what: "kill",
                source: std::io::Error::last_os_error(),
            });
        }
        // Every thread is reaped as it reports, in whatever order: the
        // leader's exit comes after every other thread's, and when the
        // process is the init of a PID namespace (a container's), its last
        // thread to exit waits in the kernel until the others, which we
        // trace, are reaped.
        let mut left: Vec<i32> = self.threads.iter().map(|t| t.pid).collect();
        while !left.is_empty() {
            let before = left.len();
            left.retain(|&tid| {
                let mut status = 0;
                // SAFETY: waitpid on a task we trace, into a live local.
                let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
                match r {
                    0 => true,
                    r if r > 0 => !matches!(
                        ptrace::decode_status(status),
                        Stop::Exited(_) | Stop::Killed(_)
                    ),
                    _ => false,
                }
            });
            if left.len() == before {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

/// The thread ids of `pid`, from `/proc/PID/task`.
pub fn list_threads(pid: i32) -> Result<Vec<i32>, DumpError> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => DumpError::NoSuchProcess { pid },
        _ => DumpError::Proc {
            pid,
            path: dir.clone(),
            source,
        },
    })?;
    let mut tids: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Finds `mov $imm32, %eax; syscall` (the vDSO's syscall fallbacks) and
/// returns the offset of the `syscall` instruction. Matching the `mov`
/// too makes it unlikely that the two bytes are the middle of another
/// instruction.
pub fn find_vdso_syscall(text: &[u8]) -> Option<usize> {
    text.windows(7)
        .position(|w| w[0] == 0xb8 && w[3] == 0 && w[4] == 0 && w[5] == 0x0f && w[6] == 0x05)
        .map(|p| p + 5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_syscall_after_mov_eax() {
        let text = [
            0x90, 0x0f, 0x05, 0xb8, 0xe4, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xc3,
        ];
        assert_eq!(find_vdso_syscall(&text), Some(8));
        assert_eq!(find_vdso_syscall(&[0x0f, 0x05, 0xc3]), None);
    }
}
