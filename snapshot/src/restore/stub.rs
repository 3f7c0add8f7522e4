//! The stub: a stopped child that restore morphs into the checkpointed
//! process. It is created with the original pid (`clone3` + `set_tid`)
//! when that pid is free, starts a new session, maps a trampoline
//! (`syscall; int3` plus scratch space) at an address free in both its own
//! and the snapshot's layout, asks to be traced, and stops.

use std::io;

use crate::sys::ptrace::{self, Stop};
use crate::sys::PAGE_SIZE;

use super::RestoreError;

/// The trampoline: one page of code, the rest scratch (paths, structs,
/// pipe data) and the stack of injected calls.
pub const TRAMPOLINE_LEN: u64 = 64 * PAGE_SIZE;
/// Room kept free around the trampoline (and so below a growing stack).
const GUARD: u64 = 1 << 20;
/// Highest user address on x86_64 with 4-level page tables.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// `struct clone_args`, version 2 (with `set_tid`, `cgroup`).
#[repr(C)]
#[derive(Default)]
pub struct CloneArgs {
    pub flags: u64,
    pub pidfd: u64,
    pub child_tid: u64,
    pub parent_tid: u64,
    pub exit_signal: u64,
    pub stack: u64,
    pub stack_size: u64,
    pub tls: u64,
    pub set_tid: u64,
    pub set_tid_size: u64,
    pub cgroup: u64,
}

const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

impl CloneArgs {
    /// The struct's bytes, to copy into a target.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: CloneArgs is repr(C), made only of u64s (no padding), so
        // all of its 88 bytes are initialised; the slice borrows self.
        unsafe {
            std::slice::from_raw_parts(
                (self as *const Self).cast::<u8>(),
                std::mem::size_of::<Self>(),
            )
        }
    }
}

/// Picks where the trampoline goes: the highest gap, below the usual
/// mmap area's top, that is at least `len` plus guards away from every
/// range in `occupied`.
pub fn choose_trampoline(occupied: &[(u64, u64)], len: u64) -> Option<u64> {
    let mut ranges: Vec<(u64, u64)> = occupied.to_vec();
    ranges.push((TASK_SIZE - GUARD, TASK_SIZE));
    ranges.sort_unstable();
    let mut gaps = Vec::new();
    let mut prev_end = 0x1000_0000u64;
    for (s, e) in ranges {
        // Nothing above the user address space ([vsyscall] lives there).
        let s = s.min(TASK_SIZE - GUARD);
        if s > prev_end {
            gaps.push((prev_end, s));
        }
        prev_end = prev_end.max(e);
    }
    gaps.into_iter()
        .rev()
        .find(|(s, e)| e - s >= len + 2 * GUARD)
        .map(|(_, e)| (e - GUARD - len) & !(PAGE_SIZE - 1))
}

/// Address ranges of this process (the stub starts as a copy of it).
pub fn own_ranges() -> io::Result<Vec<(u64, u64)>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (s, e) = l.split(' ').next()?.split_once('-')?;
            Some((
                u64::from_str_radix(s, 16).ok()?,
                u64::from_str_radix(e, 16).ok()?,
            ))
        })
        .collect())
}

/// The stopped, traced stub. Killed and reaped on drop unless
/// [`Stub::release`]d.
pub struct Stub {
    pub pid: i32,
    pub trampoline: u64,
    /// Whether the stub got the pid it asked for.
    pub pid_kept: bool,
    /// Threads and child processes created from it, which the tracer must
    /// kill and reap if restore fails.
    members: Vec<i32>,
    live: bool,
}

impl Stub {
    /// Creates the stub, with pid `want_pid` if that is free.
    pub fn spawn(want_pid: i32, trampoline: u64) -> Result<Self, RestoreError> {
        match Self::clone_stub(Some(want_pid), trampoline) {
            Ok(stub) => Ok(stub),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                tracing::warn!(
                    pid = want_pid,
                    "pid is in use; restoring under another pid (glibc's cached tid will be stale)"
                );
                Self::clone_stub(None, trampoline).map_err(RestoreError::Spawn)
            }
            Err(e) => Err(RestoreError::Spawn(e)),
        }
    }

    fn clone_stub(want_pid: Option<i32>, trampoline: u64) -> io::Result<Self> {
        let tid = want_pid.unwrap_or(0);
        let args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: if want_pid.is_some() {
                &tid as *const i32 as u64
            } else {
                0
            },
            set_tid_size: want_pid.is_some() as u64,
            ..Default::default()
        };
        // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
        // this (single-threaded) process and runs only `stub_main`, which
        // makes raw syscalls and never returns.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            stub_main(trampoline);
        }
        let pid = pid as i32;
        let mut stub = Self {
            pid,
            trampoline,
            // set_tid succeeded: the pid is the wanted one in the stub's
            // own (innermost) PID namespace.
            pid_kept: want_pid.is_some(),
            members: Vec::new(),
            live: true,
        };
        match ptrace::wait(pid)? {
            Stop::Signal { sig, .. } if sig == libc::SIGSTOP => {}
            other => {
                stub.live = false;
                return Err(io::Error::other(format!(
                    "stub pid {pid} (trampoline at {trampoline:#x}) did not stop as expected: {other:?} ({})",
                    stub_exit_reason(other)
                )));
            }
        }
        ptrace::set_options(
            pid,
            ptrace::PTRACE_O_EXITKILL
                | ptrace::PTRACE_O_TRACESYSGOOD
                | ptrace::PTRACE_O_TRACECLONE
                | ptrace::PTRACE_O_TRACEFORK,
        )?;
        Ok(stub)
    }

    /// Takes over a stub the caller made (see [`super::Adopt`]): waits for
    /// its SIGSTOP, sets the tracing options, and checks that it is pid
    /// `want_pid` in its own PID namespace.
    pub fn adopt(pid: i32, trampoline: u64, want_pid: i32) -> Result<Self, RestoreError> {
        let mut stub = Self {
            pid,
            trampoline,
            pid_kept: true,
            members: Vec::new(),
            live: true,
        };
        match ptrace::wait(pid).map_err(RestoreError::Spawn)? {
            Stop::Signal { sig, .. } if sig == libc::SIGSTOP => {}
            other => {
                if matches!(other, Stop::Exited(_) | Stop::Killed(_)) {
                    stub.live = false;
                }
                return Err(RestoreError::Spawn(io::Error::other(format!(
                    "stub pid {pid} (trampoline at {trampoline:#x}) did not stop as expected: {other:?} ({})",
                    stub_exit_reason(other)
                ))));
            }
        }
        ptrace::set_options(
            pid,
            ptrace::PTRACE_O_EXITKILL
                | ptrace::PTRACE_O_TRACESYSGOOD
                | ptrace::PTRACE_O_TRACECLONE
                | ptrace::PTRACE_O_TRACEFORK,
        )
        .map_err(RestoreError::Spawn)?;
        let inner = super::inner_id(pid)?;
        if inner != want_pid {
            return Err(RestoreError::State {
                pid,
                reason: format!(
                    "the stub is pid {inner} in its PID namespace but the snapshot's process was pid {want_pid}"
                ),
            });
        }
        Ok(stub)
    }

    /// Records a thread or child process created from the stub.
    pub fn add_member(&mut self, tid: i32) {
        self.members.push(tid);
    }

    /// Lets the restored process go: from now on it is not killed when
    /// this value is dropped.
    pub fn release(mut self) {
        self.live = false;
    }
}

fn stub_exit_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::Exited(120) => "PTRACE_TRACEME failed",
        Stop::Exited(121) => "the trampoline was mapped elsewhere",
        Stop::Exited(c) if c >= 130 => "could not map the trampoline (exit code is 130 + errno)",
        _ => "unexpected",
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        if self.live {
            // SAFETY: kill and waitpid on our own child and the tasks we
            // trace; no memory involved but the status local. The traced
            // members are reaped first: a leader is reported after its
            // threads.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                for &tid in &self.members {
                    libc::kill(tid, libc::SIGKILL);
                }
                let mut status = 0;
                for &tid in self.members.iter().rev() {
                    libc::waitpid(tid, &mut status, libc::__WALL);
                }
                libc::waitpid(self.pid, &mut status, libc::__WALL);
            }
        }
    }
}

/// The child side of [`Stub::spawn`]. Only raw syscalls: the child of a
/// fork may not allocate or take locks.
fn stub_main(trampoline: u64) -> ! {
    // SAFETY: setsid on the child's own state.
    unsafe { libc::setsid() };
    if let Err(code) = prepare_self(trampoline) {
        // SAFETY: ends the child without running anything of the parent's.
        unsafe { libc::_exit(code) };
    }
    stop_self()
}

/// What a stub does for itself, in the process that is to become one:
/// `PTRACE_TRACEME` (its parent is the restorer) and the trampoline,
/// mapped at `trampoline` with `syscall; int3` at its start. Only raw
/// syscalls (safe in the child of a fork). On failure, the code the
/// stub exits with to say what failed (see [`describe_prepare_error`]).
pub fn prepare_self(trampoline: u64) -> Result<(), i32> {
    // SAFETY: raw syscalls on the calling process's own state. The
    // trampoline is mapped with MAP_FIXED_NOREPLACE at an address the
    // restorer chose free, and the three code bytes are written inside
    // that fresh mapping.
    unsafe {
        if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
            return Err(120);
        }
        let p = libc::mmap(
            trampoline as *mut libc::c_void,
            TRAMPOLINE_LEN as usize,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            // 130 + errno, for the parent's message.
            return Err(130 + (*libc::__errno_location()).clamp(0, 100));
        }
        if p as u64 != trampoline {
            return Err(121);
        }
        let code = trampoline as *mut u8;
        // syscall; int3
        code.write(0x0f);
        code.add(1).write(0x05);
        code.add(2).write(0xcc);
    }
    Ok(())
}

/// What a [`prepare_self`] error code means.
pub fn describe_prepare_error(code: i32) -> String {
    match code {
        120 => "PTRACE_TRACEME failed".into(),
        121 => "the trampoline was mapped elsewhere".into(),
        c if c >= 130 => format!(
            "could not map the trampoline: {}",
            io::Error::from_raw_os_error(c - 130)
        ),
        c => format!("error {c}"),
    }
}

/// The stub's last act: it stops (SIGSTOP) for its tracer, which morphs
/// it from there. Never returns; exits should it be let go unchanged.
pub fn stop_self() -> ! {
    // SAFETY: raw syscalls on the calling process itself.
    unsafe {
        let me = libc::syscall(libc::SYS_getpid);
        libc::syscall(libc::SYS_kill, me, libc::SIGSTOP);
        libc::_exit(122);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampoline_goes_in_the_highest_gap_that_fits() {
        let occupied = [
            (0x5555_0000_0000, 0x5555_0010_0000),
            (0x7fff_0000_0000, 0x7fff_ff00_0000),
        ];
        let at = choose_trampoline(&occupied, TRAMPOLINE_LEN).unwrap();
        // The gap above the last range (below the top guard) fits.
        assert!(at >= 0x7fff_ff00_0000 + GUARD, "{at:#x}");
        assert!(at + TRAMPOLINE_LEN + GUARD <= TASK_SIZE);
        assert_eq!(at % PAGE_SIZE, 0);
        // Without it, the next gap down.
        let full = [occupied[0], (0x7fff_0000_0000, TASK_SIZE)];
        let at = choose_trampoline(&full, TRAMPOLINE_LEN).unwrap();
        assert!(at + TRAMPOLINE_LEN + GUARD <= 0x7fff_0000_0000 && at >= 0x5555_0010_0000 + GUARD);
        for (s, e) in full {
            assert!(at + TRAMPOLINE_LEN <= s || at >= e);
        }
    }

    #[test]
    fn vsyscall_does_not_open_a_gap_above_the_user_range() {
        let occupied = [
            (0x7fff_0000_0000, 0x7fff_ffef_0000),
            (0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000),
        ];
        let at = choose_trampoline(&occupied, TRAMPOLINE_LEN).unwrap();
        assert!(at < 0x7fff_0000_0000, "{at:#x}");
    }

    #[test]
    fn no_gap_no_trampoline() {
        assert_eq!(choose_trampoline(&[(0, TASK_SIZE)], TRAMPOLINE_LEN), None);
    }
}
