//! The kernel seam: thin, checked wrappers over ptrace, `/proc`, and the
//! syscalls the engine makes from outside its target.
//!
//! Everything above this module works with the types here
//! ([`Regs`], [`SigInfo`]) and the [`remote::Remote`] trait, so the logic can
//! be unit-tested without a live process.

pub mod mem;
pub mod proc;
pub mod ptrace;
pub mod remote;
pub mod sock_diag;

use std::io;

/// The result of a raw syscall: the return value or the errno.
pub fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Like [`cvt`] for the `c_int` returning libc wrappers.
pub fn cvt_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The size of a page; snaprun supports x86_64 with 4 KiB pages only.
pub const PAGE_SIZE: u64 = 4096;

/// Number of signals (1..=64) the kernel knows on x86_64.
pub const NSIG: i32 = 64;

/// General-purpose registers, the kernel's `struct user_regs_struct`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Regs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    pub eflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

const _: () = assert!(std::mem::size_of::<Regs>() == std::mem::size_of::<libc::user_regs_struct>());

/// A `siginfo_t` as the kernel lays it out (128 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct SigInfo(pub [u8; 128]);

impl SigInfo {
    pub fn signo(&self) -> i32 {
        i32::from_ne_bytes(self.0[0..4].try_into().expect("4 bytes"))
    }

    pub fn code(&self) -> i32 {
        i32::from_ne_bytes(self.0[8..12].try_into().expect("4 bytes"))
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigInfo")
            .field("signo", &self.signo())
            .field("code", &self.code())
            .finish()
    }
}

/// Kernel restart codes a syscall interrupted by a stop leaves in `rax`.
pub mod restart {
    pub const ERESTARTSYS: i64 = -512;
    pub const ERESTARTNOINTR: i64 = -513;
    pub const ERESTARTNOHAND: i64 = -514;
    pub const ERESTART_RESTARTBLOCK: i64 = -516;
}

/// How a thread frozen inside a syscall continues after restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallResume {
    /// Not in a syscall, or the syscall completed: registers as they are.
    AsIs,
    /// Re-execute the syscall: `rip -= 2`, `rax = orig_rax`.
    Restart,
    /// The kernel's restart block is gone after restore: return `-EINTR`
    /// (CRIU does the same; libraries retry).
    Eintr,
}

/// Decides how to resume a thread whose registers were saved at a stop.
pub fn syscall_resume(regs: &Regs) -> SyscallResume {
    if (regs.orig_rax as i64) < 0 {
        return SyscallResume::AsIs;
    }
    match regs.rax as i64 {
        restart::ERESTARTSYS | restart::ERESTARTNOINTR | restart::ERESTARTNOHAND => {
            SyscallResume::Restart
        }
        restart::ERESTART_RESTARTBLOCK => SyscallResume::Eintr,
        _ => SyscallResume::AsIs,
    }
}

/// The registers a restored thread starts with: the restart rules applied,
/// and `orig_rax = -1` so that the kernel does no restart handling of its own
/// on the way back to user space.
pub fn resume_regs(saved: &Regs) -> Regs {
    let mut regs = *saved;
    match syscall_resume(saved) {
        SyscallResume::AsIs => {}
        SyscallResume::Restart => {
            regs.rax = saved.orig_rax;
            regs.rip = saved.rip.wrapping_sub(2);
        }
        SyscallResume::Eintr => regs.rax = (-(libc::EINTR as i64)) as u64,
    }
    regs.orig_rax = u64::MAX;
    regs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_syscall(nr: u64, rax: i64) -> Regs {
        Regs {
            orig_rax: nr,
            rax: rax as u64,
            rip: 0x1002,
            ..Default::default()
        }
    }

    #[test]
    fn restartable_syscall_is_reexecuted() {
        for code in [
            restart::ERESTARTSYS,
            restart::ERESTARTNOINTR,
            restart::ERESTARTNOHAND,
        ] {
            let regs = resume_regs(&in_syscall(34, code));
            assert_eq!(regs.rip, 0x1000);
            assert_eq!(regs.rax, 34);
            assert_eq!(regs.orig_rax, u64::MAX);
        }
    }

    #[test]
    fn restart_block_becomes_eintr() {
        let regs = resume_regs(&in_syscall(35, restart::ERESTART_RESTARTBLOCK));
        assert_eq!(regs.rip, 0x1002);
        assert_eq!(regs.rax as i64, -(libc::EINTR as i64));
    }

    #[test]
    fn completed_syscall_and_user_code_are_left_alone() {
        let regs = resume_regs(&in_syscall(0, 5));
        assert_eq!((regs.rip, regs.rax), (0x1002, 5));
        let user = Regs {
            orig_rax: u64::MAX,
            rax: restart::ERESTARTSYS as u64,
            rip: 0x2000,
            ..Default::default()
        };
        assert_eq!(syscall_resume(&user), SyscallResume::AsIs);
        assert_eq!(resume_regs(&user).rip, 0x2000);
    }
}
