//! ptrace requests the engine uses, each a checked wrapper.

use std::io;

use super::{cvt, Regs, SigInfo};

pub const PTRACE_O_TRACESYSGOOD: u64 = 0x01;
pub const PTRACE_O_TRACECLONE: u64 = 0x08;
pub const PTRACE_O_EXITKILL: u64 = 0x10_0000;

const PTRACE_GETREGSET: libc::c_uint = 0x4204;
const PTRACE_SETREGSET: libc::c_uint = 0x4205;
const PTRACE_SEIZE: libc::c_uint = 0x4206;
const PTRACE_INTERRUPT: libc::c_uint = 0x4207;
const PTRACE_PEEKSIGINFO: libc::c_uint = 0x4209;
const PTRACE_GETSIGMASK: libc::c_uint = 0x420a;
const PTRACE_SETSIGMASK: libc::c_uint = 0x420b;
const PTRACE_GET_RSEQ_CONFIGURATION: libc::c_uint = 0x420f;
const PTRACE_PEEKSIGINFO_SHARED: u32 = 1;
pub const PTRACE_EVENT_CLONE: i32 = 3;
pub const PTRACE_EVENT_STOP: i32 = 128;
const NT_X86_XSTATE: usize = 0x202;

/// Largest XSAVE area we accept (AMX tiles make it ~11 KiB).
pub const XSAVE_MAX: usize = 16 * 1024;

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<libc::c_long> {
    // SAFETY: ptrace with integer arguments; where addr/data are pointers
    // the callers below pass valid, live buffers of the size the request
    // needs.
    cvt(unsafe { libc::ptrace(req, pid, addr, data) })
}

pub fn seize(pid: i32, options: u64) -> io::Result<()> {
    ptrace(PTRACE_SEIZE, pid, 0, options as usize).map(drop)
}

pub fn interrupt(pid: i32) -> io::Result<()> {
    ptrace(PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

pub fn set_options(pid: i32, options: u64) -> io::Result<()> {
    ptrace(libc::PTRACE_SETOPTIONS, pid, 0, options as usize).map(drop)
}

/// The message of the last ptrace event (for `PTRACE_EVENT_CLONE`: the new
/// thread's id).
pub fn get_event_msg(pid: i32) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    ptrace(
        libc::PTRACE_GETEVENTMSG,
        pid,
        0,
        &mut msg as *mut libc::c_ulong as usize,
    )?;
    Ok(msg)
}

pub fn cont(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_CONT, pid, 0, sig as usize).map(drop)
}

pub fn syscall(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_SYSCALL, pid, 0, sig as usize).map(drop)
}

pub fn detach(pid: i32, sig: i32) -> io::Result<()> {
    ptrace(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

pub fn get_regs(pid: i32) -> io::Result<Regs> {
    let mut regs = Regs::default();
    ptrace(
        libc::PTRACE_GETREGS,
        pid,
        0,
        &mut regs as *mut Regs as usize,
    )?;
    Ok(regs)
}

pub fn set_regs(pid: i32, regs: &Regs) -> io::Result<()> {
    ptrace(libc::PTRACE_SETREGS, pid, 0, regs as *const Regs as usize).map(drop)
}

/// The thread's full XSAVE area (x87, SSE, AVX, AVX-512, ...).
pub fn get_xstate(pid: i32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XSAVE_MAX];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    ptrace(
        PTRACE_GETREGSET,
        pid,
        NT_X86_XSTATE,
        &mut iov as *mut libc::iovec as usize,
    )?;
    buf.truncate(iov.iov_len);
    Ok(buf)
}

pub fn set_xstate(pid: i32, xstate: &[u8]) -> io::Result<()> {
    let mut copy = xstate.to_vec();
    let mut iov = libc::iovec {
        iov_base: copy.as_mut_ptr().cast(),
        iov_len: copy.len(),
    };
    ptrace(
        PTRACE_SETREGSET,
        pid,
        NT_X86_XSTATE,
        &mut iov as *mut libc::iovec as usize,
    )
    .map(drop)
}

pub fn get_sigmask(pid: i32) -> io::Result<u64> {
    let mut mask = 0u64;
    ptrace(PTRACE_GETSIGMASK, pid, 8, &mut mask as *mut u64 as usize)?;
    Ok(mask)
}

pub fn set_sigmask(pid: i32, mask: u64) -> io::Result<()> {
    ptrace(PTRACE_SETSIGMASK, pid, 8, &mask as *const u64 as usize).map(drop)
}

#[repr(C)]
struct PeekSigInfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// Pending signals without dequeuing them: the thread's own queue, or the
/// process-wide one when `shared`.
pub fn peek_siginfo(pid: i32, shared: bool) -> io::Result<Vec<SigInfo>> {
    let mut out = Vec::new();
    loop {
        let mut batch = [SigInfo([0; 128]); 32];
        let args = PeekSigInfoArgs {
            off: out.len() as u64,
            flags: if shared { PTRACE_PEEKSIGINFO_SHARED } else { 0 },
            nr: batch.len() as i32,
        };
        let n = ptrace(
            PTRACE_PEEKSIGINFO,
            pid,
            &args as *const PeekSigInfoArgs as usize,
            batch.as_mut_ptr() as usize,
        )? as usize;
        out.extend_from_slice(&batch[..n]);
        if n < batch.len() {
            return Ok(out);
        }
    }
}

/// The thread's rseq registration, as `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RseqConfig {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

const _: () = assert!(std::mem::size_of::<RseqConfig>() == 24);

pub fn get_rseq(pid: i32) -> io::Result<RseqConfig> {
    let mut conf = RseqConfig::default();
    ptrace(
        PTRACE_GET_RSEQ_CONFIGURATION,
        pid,
        std::mem::size_of::<RseqConfig>(),
        &mut conf as *mut RseqConfig as usize,
    )?;
    Ok(conf)
}

/// What `waitpid` said about a tracee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `PTRACE_EVENT_STOP` with the stop signal: SIGTRAP for an interrupt,
    /// a job-control signal for a group stop.
    Event {
        sig: i32,
    },
    /// A syscall entry or exit stop (`PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// A signal-delivery stop, or another ptrace event.
    Signal {
        sig: i32,
        event: i32,
    },
    Exited(i32),
    Killed(i32),
}

pub fn wait(pid: i32) -> io::Result<Stop> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a live local.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(decode_status(status))
}

pub fn decode_status(status: i32) -> Stop {
    if libc::WIFEXITED(status) {
        return Stop::Exited(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        return Stop::Killed(libc::WTERMSIG(status));
    }
    let sig = libc::WSTOPSIG(status);
    let event = (status >> 16) & 0xff;
    if sig == (libc::SIGTRAP | 0x80) {
        return Stop::Syscall;
    }
    if event == PTRACE_EVENT_STOP {
        return Stop::Event { sig };
    }
    Stop::Signal { sig, event }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(decode_status(0x0100), Stop::Exited(1));
        assert_eq!(decode_status(9), Stop::Killed(9));
        assert_eq!(decode_status(0x857f), Stop::Syscall);
        assert_eq!(
            decode_status((PTRACE_EVENT_STOP << 16) | (libc::SIGTRAP << 8) | 0x7f),
            Stop::Event { sig: libc::SIGTRAP }
        );
        assert_eq!(
            decode_status((libc::SIGUSR1 << 8) | 0x7f),
            Stop::Signal {
                sig: libc::SIGUSR1,
                event: 0
            }
        );
    }
}
