//! Syscalls run inside a stopped tracee ("injection"), and its memory.
//!
//! [`Remote`] is the seam: dump and restore logic is written against it,
//! [`Injector`] implements it with ptrace, and unit tests use a recording
//! fake.

use std::io;

use super::mem::{vm_write, ProcMem};
use super::ptrace::{self, Stop};
use super::Regs;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("pid {pid}: ptrace {op}: {source}")]
    Ptrace {
        pid: i32,
        op: &'static str,
        source: io::Error,
    },
    #[error("pid {pid}: {what} failed in the target: {source}")]
    Syscall {
        pid: i32,
        what: String,
        source: io::Error,
    },
    #[error("pid {pid} died during {what} ({how})")]
    Died { pid: i32, what: String, how: String },
    #[error("pid {pid}: unexpected stop {stop:?} at {rip:#x} during {what}")]
    UnexpectedStop {
        pid: i32,
        what: String,
        stop: Stop,
        rip: u64,
    },
    #[error("pid {pid}: {what}: wrote {wrote} of {want} bytes")]
    ShortWrite {
        pid: i32,
        what: String,
        wrote: u64,
        want: usize,
    },
    #[error("pid {pid}: memory {addr:#x}+{len:#x}: {source}")]
    Memory {
        pid: i32,
        addr: u64,
        len: usize,
        source: io::Error,
    },
}

/// A process whose syscalls snaprun can run, and whose memory it can reach.
pub trait Remote {
    fn pid(&self) -> i32;

    /// Runs syscall `nr` with `args` in the target and returns the raw
    /// result (a negative errno on failure). `what` names it in errors.
    fn raw_syscall(&mut self, what: &str, nr: i64, args: &[u64]) -> Result<i64, RemoteError>;

    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), RemoteError>;

    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), RemoteError>;

    /// Runs a syscall and turns a negative result into an error naming
    /// `what`.
    fn syscall(&mut self, what: &str, nr: i64, args: &[u64]) -> Result<u64, RemoteError> {
        let ret = self.raw_syscall(what, nr, args)?;
        self.check(what, ret)
    }

    /// Turns a raw result from [`Remote::raw_syscall`] into the value or an
    /// error naming `what`.
    fn check(&self, what: &str, ret: i64) -> Result<u64, RemoteError> {
        if (-4095..0).contains(&ret) {
            return Err(RemoteError::Syscall {
                pid: self.pid(),
                what: what.to_string(),
                source: io::Error::from_raw_os_error(-ret as i32),
            });
        }
        Ok(ret as u64)
    }
}

/// How the injected `syscall` instruction is stopped after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectMode {
    /// The instruction is followed by `int3` (our own trampoline): one stop
    /// per syscall.
    Trap,
    /// Any `syscall` instruction in the target, stopped at syscall entry and
    /// exit with `PTRACE_SYSCALL`: two stops, but nothing after the
    /// instruction ever runs.
    SyscallStops,
}

/// Runs syscalls in a ptrace-stopped thread by pointing its `rip` at a
/// `syscall` instruction.
pub struct Injector {
    pid: i32,
    base: Regs,
    syscall_ip: u64,
    stack: Option<u64>,
    mode: InjectMode,
    mem: ProcMem,
}

impl Injector {
    /// `base` is the register set injected calls start from (the thread's
    /// own, saved by the caller); `syscall_ip` the address of a `syscall`
    /// instruction in the target.
    pub fn new(
        pid: i32,
        base: Regs,
        syscall_ip: u64,
        mode: InjectMode,
    ) -> Result<Self, RemoteError> {
        let mem = ProcMem::open(pid).map_err(|source| RemoteError::Memory {
            pid,
            addr: 0,
            len: 0,
            source,
        })?;
        Ok(Self {
            pid,
            base,
            syscall_ip,
            stack: None,
            mode,
            mem,
        })
    }

    /// Uses `sp` as the stack pointer of injected calls (so that e.g.
    /// `sigaltstack` does not see the thread as running on its alternate
    /// stack).
    pub fn set_stack(&mut self, sp: u64) {
        self.stack = Some(sp);
    }

    pub fn set_mode(&mut self, mode: InjectMode) {
        self.mode = mode;
    }

    fn ptrace_err(&self, op: &'static str) -> impl FnOnce(io::Error) -> RemoteError {
        let pid = self.pid;
        move |source| RemoteError::Ptrace { pid, op, source }
    }

    fn wait_for(&self, what: &str, want: fn(Stop) -> bool) -> Result<(), RemoteError> {
        let stop = ptrace::wait(self.pid).map_err(self.ptrace_err("waitpid"))?;
        if want(stop) {
            return Ok(());
        }
        match stop {
            Stop::Exited(code) => Err(RemoteError::Died {
                pid: self.pid,
                what: what.to_string(),
                how: format!("exited with {code}"),
            }),
            Stop::Killed(sig) => Err(RemoteError::Died {
                pid: self.pid,
                what: what.to_string(),
                how: format!("killed by signal {sig}"),
            }),
            stop => {
                let rip = ptrace::get_regs(self.pid).map(|r| r.rip).unwrap_or(0);
                Err(RemoteError::UnexpectedStop {
                    pid: self.pid,
                    what: what.to_string(),
                    stop,
                    rip,
                })
            }
        }
    }
}

impl Injector {
    /// Runs a `clone`/`clone3` in [`InjectMode::Trap`] mode in a tracee with
    /// `PTRACE_O_TRACECLONE` set: the kernel reports the new task with a
    /// clone event before the call returns. Returns the raw result and the
    /// new task's id, which starts traced and stopped.
    pub fn clone_syscall(
        &mut self,
        what: &str,
        nr: i64,
        args: &[u64],
    ) -> Result<(i64, Option<i32>), RemoteError> {
        assert_eq!(
            self.mode,
            InjectMode::Trap,
            "clone is injected in Trap mode"
        );
        self.load(nr, args)?;
        ptrace::cont(self.pid, 0).map_err(self.ptrace_err("CONT"))?;
        let stop = ptrace::wait(self.pid).map_err(self.ptrace_err("waitpid"))?;
        let child = match stop {
            Stop::Signal { sig, event } if sig == libc::SIGTRAP && event == 0 => None,
            Stop::Signal { sig, event }
                if sig == libc::SIGTRAP && event == ptrace::PTRACE_EVENT_CLONE =>
            {
                let tid =
                    ptrace::get_event_msg(self.pid).map_err(self.ptrace_err("GETEVENTMSG"))?;
                ptrace::cont(self.pid, 0).map_err(self.ptrace_err("CONT"))?;
                self.wait_for(
                    what,
                    |s| matches!(s, Stop::Signal { sig, event: 0 } if sig == libc::SIGTRAP),
                )?;
                Some(tid as i32)
            }
            other => {
                return Err(RemoteError::UnexpectedStop {
                    pid: self.pid,
                    what: what.to_string(),
                    stop: other,
                    rip: ptrace::get_regs(self.pid).map(|r| r.rip).unwrap_or(0),
                })
            }
        };
        let after = ptrace::get_regs(self.pid).map_err(self.ptrace_err("GETREGS"))?;
        Ok((after.rax as i64, child))
    }

    /// Points the thread at the syscall instruction with `nr` and `args`
    /// loaded.
    fn load(&mut self, nr: i64, args: &[u64]) -> Result<(), RemoteError> {
        assert!(args.len() <= 6, "a syscall has at most six arguments");
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let mut regs = self.base;
        regs.rip = self.syscall_ip;
        regs.rax = nr as u64;
        regs.orig_rax = u64::MAX;
        (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9) =
            (a[0], a[1], a[2], a[3], a[4], a[5]);
        if let Some(sp) = self.stack {
            regs.rsp = sp;
        }
        ptrace::set_regs(self.pid, &regs).map_err(self.ptrace_err("SETREGS"))
    }
}

impl Remote for Injector {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn raw_syscall(&mut self, what: &str, nr: i64, args: &[u64]) -> Result<i64, RemoteError> {
        self.load(nr, args)?;
        match self.mode {
            InjectMode::Trap => {
                ptrace::cont(self.pid, 0).map_err(self.ptrace_err("CONT"))?;
                self.wait_for(
                    what,
                    |s| matches!(s, Stop::Signal { sig, event: 0 } if sig == libc::SIGTRAP),
                )?;
            }
            InjectMode::SyscallStops => {
                ptrace::syscall(self.pid, 0).map_err(self.ptrace_err("SYSCALL"))?;
                self.wait_for(what, |s| s == Stop::Syscall)?;
                ptrace::syscall(self.pid, 0).map_err(self.ptrace_err("SYSCALL"))?;
                self.wait_for(what, |s| s == Stop::Syscall)?;
            }
        }
        let after = ptrace::get_regs(self.pid).map_err(self.ptrace_err("GETREGS"))?;
        Ok(after.rax as i64)
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), RemoteError> {
        // process_vm_writev is the fast path; /proc/PID/mem also reaches
        // mappings that are not writable.
        vm_write(self.pid, addr, data)
            .or_else(|_| self.mem.write_all_at(addr, data))
            .map_err(|source| RemoteError::Memory {
                pid: self.pid,
                addr,
                len: data.len(),
                source,
            })
    }

    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), RemoteError> {
        let len = buf.len();
        self.mem
            .read_exact_at(addr, buf)
            .map_err(|source| RemoteError::Memory {
                pid: self.pid,
                addr,
                len,
                source,
            })
    }
}

/// A bump allocator over a scratch area in the target, for the structs and
/// strings that injected syscalls take by pointer.
pub struct Scratch {
    base: u64,
    size: u64,
    used: u64,
}

impl Scratch {
    pub fn new(base: u64, size: u64) -> Self {
        Self {
            base,
            size,
            used: 0,
        }
    }

    /// Reserves `len` bytes (8-byte aligned) and returns their address.
    pub fn alloc(&mut self, len: usize) -> u64 {
        let len = (len as u64 + 7) & !7;
        assert!(
            self.used + len <= self.size,
            "scratch area of {} bytes exhausted",
            self.size
        );
        let addr = self.base + self.used;
        self.used += len;
        addr
    }

    /// Copies `data` into the target and returns its address.
    pub fn put(&mut self, remote: &mut dyn Remote, data: &[u8]) -> Result<u64, RemoteError> {
        let addr = self.alloc(data.len());
        remote.write_mem(addr, data)?;
        Ok(addr)
    }

    /// Copies a path (NUL-terminated) into the target.
    pub fn put_cstr(&mut self, remote: &mut dyn Remote, s: &str) -> Result<u64, RemoteError> {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.put(remote, &bytes)
    }

    pub fn reset(&mut self) {
        self.used = 0;
    }
}

/// `openat(AT_FDCWD, path, flags, mode)` inside the target, the path
/// passed through `scratch`; the raw result, for callers that look at the
/// errno.
pub fn open_raw(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    path: &str,
    flags: i32,
    mode: u32,
) -> Result<i64, RemoteError> {
    let p = scratch.put_cstr(remote, path)?;
    let r = remote.raw_syscall(
        what,
        libc::SYS_openat,
        &[libc::AT_FDCWD as u64, p, flags as u64, mode as u64],
    );
    scratch.reset();
    r
}

/// Opens `path` inside the target; the new fd, or an error naming `what`.
pub fn open(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    path: &str,
    flags: i32,
) -> Result<u64, RemoteError> {
    let r = open_raw(remote, scratch, what, path, flags, 0)?;
    remote.check(what, r)
}

/// Writes `data` to the target's `fd` through `scratch`, in pieces that fit
/// it. A short write is an error: the callers write into fresh files and
/// into pipes sized to hold the data.
pub fn write_all(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    what: &str,
    fd: u64,
    data: &[u8],
) -> Result<(), RemoteError> {
    for piece in data.chunks(32 * 1024) {
        let at = scratch.put(remote, piece)?;
        let n = remote.syscall(what, libc::SYS_write, &[fd, at, piece.len() as u64]);
        scratch.reset();
        let n = n?;
        if n as usize != piece.len() {
            return Err(RemoteError::ShortWrite {
                pid: remote.pid(),
                what: what.to_string(),
                wrote: n,
                want: piece.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod fake {
    //! A recording [`Remote`] for unit tests of the logic above the kernel.

    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    pub struct FakeRemote {
        pub calls: Vec<(String, i64, Vec<u64>)>,
        pub memory: BTreeMap<u64, Vec<u8>>,
        /// Results to return, by syscall description; default 0.
        pub results: BTreeMap<String, Vec<i64>>,
        pub next_fd: i64,
    }

    impl Remote for FakeRemote {
        fn pid(&self) -> i32 {
            4242
        }

        fn raw_syscall(&mut self, what: &str, nr: i64, args: &[u64]) -> Result<i64, RemoteError> {
            self.calls.push((what.to_string(), nr, args.to_vec()));
            if let Some(queue) = self.results.get_mut(what) {
                if !queue.is_empty() {
                    return Ok(queue.remove(0));
                }
            }
            if nr == libc::SYS_openat || nr == libc::SYS_socket {
                self.next_fd += 1;
                return Ok(100 + self.next_fd);
            }
            if nr == libc::SYS_dup3 {
                return Ok(args[1] as i64);
            }
            Ok(0)
        }

        fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), RemoteError> {
            self.memory.insert(addr, data.to_vec());
            Ok(())
        }

        fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), RemoteError> {
            if let Some(d) = self.memory.get(&addr) {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeRemote;
    use super::*;

    #[test]
    fn negative_results_become_errors_naming_the_call() {
        let mut fake = FakeRemote::default();
        fake.results
            .insert("open /x".into(), vec![-(libc::ENOENT as i64)]);
        let err = fake.syscall("open /x", libc::SYS_openat, &[]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pid 4242") && msg.contains("open /x"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn scratch_is_aligned_and_bounded() {
        let mut s = Scratch::new(0x1000, 64);
        assert_eq!(s.alloc(3), 0x1000);
        assert_eq!(s.alloc(8), 0x1008);
        s.reset();
        assert_eq!(s.alloc(64), 0x1000);
    }

    #[test]
    #[should_panic(expected = "exhausted")]
    fn scratch_overflow_panics() {
        Scratch::new(0, 16).alloc(17);
    }
}
