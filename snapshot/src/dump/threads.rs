//! A thread's state: what ptrace reads from outside, and what only the
//! thread itself can tell (read by injected syscalls).

use crate::image::{AltStack, PendingSignal, RobustList, Rseq, SigAction, ThreadImage};
use crate::sys::remote::{Remote, Scratch};
use crate::sys::{ptrace, SigInfo, NSIG};

use super::freeze::Frozen;
use super::DumpError;
use crate::hex;

const PR_GET_TID_ADDRESS: u64 = 40;

/// What the dumper reads by running syscalls inside the target, once for
/// the process.
pub struct ProcessInjected {
    pub sigactions: Vec<SigAction>,
    pub brk: u64,
    /// `prctl(PR_GET_SECUREBITS)` of the leader.
    pub securebits: u32,
}

/// What only the thread itself can tell, read by syscalls injected into it.
pub struct ThreadInjected {
    pub altstack: AltStack,
    pub clear_tid_address: u64,
}

/// Reads the signal dispositions and brk through `remote` (any thread of
/// the process), using `scratch` as the output buffer.
pub fn read_process(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
) -> Result<ProcessInjected, DumpError> {
    let buf = scratch.alloc(64);
    let mut sigactions = Vec::new();
    for sig in 1..=NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        remote.syscall(
            &format!("rt_sigaction({sig})"),
            libc::SYS_rt_sigaction,
            &[sig as u64, 0, buf, 8],
        )?;
        let mut raw = [0u8; 32];
        remote.read_mem(buf, &mut raw)?;
        let word =
            |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let act = SigAction {
            signo: sig,
            handler: word(0),
            flags: word(1),
            restorer: word(2),
            mask: word(3),
        };
        // Defaults need not be stored: restore resets every signal first.
        if act.handler != 0 || act.flags != 0 || act.mask != 0 {
            sigactions.push(act);
        }
    }
    scratch.reset();
    let brk = remote.syscall("brk(0)", libc::SYS_brk, &[0])?;
    let securebits = remote.syscall(
        "prctl(PR_GET_SECUREBITS)",
        libc::SYS_prctl,
        &[libc::PR_GET_SECUREBITS as u64],
    )? as u32;
    Ok(ProcessInjected {
        sigactions,
        brk,
        securebits,
    })
}

/// Reads the thread's alternate signal stack and clear-tid address through
/// `remote` (injecting into that thread), using `scratch` as the buffer.
pub fn read_thread(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
) -> Result<ThreadInjected, DumpError> {
    let buf = scratch.alloc(64);
    remote.syscall("sigaltstack", libc::SYS_sigaltstack, &[0, buf])?;
    let mut raw = [0u8; 24];
    remote.read_mem(buf, &mut raw)?;
    let altstack = AltStack {
        sp: u64::from_ne_bytes(raw[0..8].try_into().expect("8 bytes")),
        flags: i32::from_ne_bytes(raw[8..12].try_into().expect("4 bytes")),
        size: u64::from_ne_bytes(raw[16..24].try_into().expect("8 bytes")),
    };

    remote.syscall(
        "prctl(PR_GET_TID_ADDRESS)",
        libc::SYS_prctl,
        &[PR_GET_TID_ADDRESS, buf],
    )?;
    let mut raw = [0u8; 8];
    remote.read_mem(buf, &mut raw)?;
    scratch.reset();
    Ok(ThreadInjected {
        altstack,
        clear_tid_address: u64::from_ne_bytes(raw),
    })
}

pub fn pending(list: Vec<SigInfo>) -> Vec<PendingSignal> {
    list.into_iter()
        .map(|si| PendingSignal {
            signo: si.signo(),
            siginfo: hex::encode(&si.0),
        })
        .collect()
}

/// The thread's image: registers saved at the freeze, plus what ptrace
/// reads from outside.
pub fn dump_thread(
    tgid: i32,
    frozen: &Frozen,
    injected: &ThreadInjected,
) -> Result<ThreadImage, DumpError> {
    let pid = frozen.pid;
    let comm_path = format!("/proc/{tgid}/task/{pid}/comm");
    let comm = std::fs::read_to_string(&comm_path)
        .map_err(|source| DumpError::Proc {
            pid,
            path: comm_path,
            source,
        })?
        .trim_end_matches('\n')
        .to_string();
    let err = |what| move |source| DumpError::Ptrace { pid, what, source };
    let xsave = ptrace::get_xstate(pid).map_err(err("GETREGSET NT_X86_XSTATE"))?;
    let pending = pending(ptrace::peek_siginfo(pid, false).map_err(err("PEEKSIGINFO"))?);
    let rseq = match ptrace::get_rseq(pid) {
        Ok(c) if c.rseq_abi_pointer != 0 => Some(Rseq {
            address: c.rseq_abi_pointer,
            len: c.rseq_abi_size,
            signature: c.signature,
        }),
        Ok(_) => None,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => None,
        Err(e) => return Err(err("GET_RSEQ_CONFIGURATION")(e)),
    };
    let mut head = 0u64;
    let mut len = 0usize;
    // SAFETY: get_robust_list writes a pointer and a length into the two
    // live locals.
    let r = unsafe {
        libc::syscall(
            libc::SYS_get_robust_list,
            pid,
            &mut head as *mut u64,
            &mut len as *mut usize,
        )
    };
    if r != 0 {
        return Err(err("get_robust_list")(std::io::Error::last_os_error()));
    }
    Ok(ThreadImage {
        tid: pid,
        comm,
        regs: frozen.regs,
        xsave: hex::encode(&xsave),
        sigmask: frozen.sigmask,
        pending,
        altstack: injected.altstack,
        clear_tid_address: injected.clear_tid_address,
        robust_list: RobustList {
            head,
            len: len as u64,
        },
        rseq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::remote::fake::FakeRemote;

    #[test]
    fn reads_every_catchable_signal_and_skips_defaults() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x1000, 4096);
        let state = read_process(&mut fake, &mut scratch).unwrap();
        let sigaction_calls = fake
            .calls
            .iter()
            .filter(|(_, nr, _)| *nr == libc::SYS_rt_sigaction)
            .count();
        assert_eq!(sigaction_calls, 62);
        assert!(state.sigactions.is_empty(), "fake memory reads as SIG_DFL");
        assert!(fake.calls.iter().any(|(w, _, _)| w == "brk(0)"));
    }
}
