//! Process and thread attributes set from inside the target: cwd, umask,
//! name, rlimits, signal handlers, the alternate stack, the clear-tid
//! address, the robust list, rseq, pending signals and credentials.

use crate::hex;
use crate::image::{PendingSignal, ProcessImage, ThreadImage};
use crate::sys::ptrace;
use crate::sys::remote::{Remote, Scratch};
use crate::sys::NSIG;

use super::RestoreError;

const RSEQ_FLAG_UNREGISTER: u64 = 1;

/// Drops the stub's own rseq registration (its area is about to be
/// unmapped; the kernel would fault writing to it).
pub fn unregister_stub_rseq(remote: &mut dyn Remote) -> Result<(), RestoreError> {
    match ptrace::get_rseq(remote.pid()) {
        Ok(c) if c.rseq_abi_pointer != 0 => {
            remote.syscall(
                "rseq unregister (stub)",
                libc::SYS_rseq,
                &[
                    c.rseq_abi_pointer,
                    c.rseq_abi_size as u64,
                    RSEQ_FLAG_UNREGISTER,
                    c.signature as u64,
                ],
            )?;
        }
        _ => {}
    }
    Ok(())
}

pub fn set_attributes(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    p: &ProcessImage,
) -> Result<(), RestoreError> {
    // cwd was read as a path in the dumper's view, so it is entered before
    // a chroot (which keeps the cwd).
    let path = scratch.put_cstr(remote, &p.cwd)?;
    remote.syscall(&format!("chdir {}", p.cwd), libc::SYS_chdir, &[path])?;
    scratch.reset();
    if p.root != "/" {
        let path = scratch.put_cstr(remote, &p.root)?;
        remote.syscall(&format!("chroot {}", p.root), libc::SYS_chroot, &[path])?;
        scratch.reset();
    }
    remote.syscall("umask", libc::SYS_umask, &[p.umask as u64])?;
    remote.syscall(
        "personality",
        libc::SYS_personality,
        &[p.personality as u64],
    )?;
    let name = scratch.put_cstr(remote, &p.comm)?;
    remote.syscall(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, name],
    )?;
    scratch.reset();
    for lim in &p.rlimits {
        let mut raw = Vec::with_capacity(16);
        raw.extend_from_slice(&lim.soft.to_ne_bytes());
        raw.extend_from_slice(&lim.hard.to_ne_bytes());
        let at = scratch.put(remote, &raw)?;
        let what = format!("prlimit {} soft {} hard {}", lim.name, lim.soft, lim.hard);
        let r = remote.raw_syscall(&what, libc::SYS_prlimit64, &[0, lim.resource as u64, at, 0])?;
        scratch.reset();
        if r == -(libc::EPERM as i64) {
            // Raising a hard limit needs CAP_SYS_RESOURCE: keep the hard
            // limit the process has, with the soft one as close as it
            // allows, and say so.
            let cur = scratch.alloc(16);
            remote.syscall(
                &what,
                libc::SYS_prlimit64,
                &[0, lim.resource as u64, 0, cur],
            )?;
            let mut raw = [0u8; 16];
            remote.read_mem(cur, &mut raw)?;
            let hard = u64::from_ne_bytes(raw[8..16].try_into().expect("8 bytes"));
            let soft = lim.soft.min(hard);
            let mut new = soft.to_ne_bytes().to_vec();
            new.extend_from_slice(&hard.to_ne_bytes());
            let at = scratch.put(remote, &new)?;
            remote.syscall(&what, libc::SYS_prlimit64, &[0, lim.resource as u64, at, 0])?;
            scratch.reset();
            tracing::warn!(
                limit = %lim.name,
                want_soft = lim.soft,
                want_hard = lim.hard,
                soft,
                hard,
                "hard limit cannot be raised without CAP_SYS_RESOURCE; lowered what could be"
            );
        } else {
            remote.check(&what, r)?;
        }
    }
    Ok(())
}

/// Every signal's disposition: as recorded, or the default.
pub fn set_sigactions(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    p: &ProcessImage,
) -> Result<(), RestoreError> {
    for sig in 1..=NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        let act = p.sigactions.iter().find(|a| a.signo == sig);
        let words = match act {
            Some(a) => [a.handler, a.flags, a.restorer, a.mask],
            None => [0; 4],
        };
        let raw: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let at = scratch.put(remote, &raw)?;
        remote.syscall(
            &format!("rt_sigaction({sig})"),
            libc::SYS_rt_sigaction,
            &[sig as u64, at, 0, 8],
        )?;
        scratch.reset();
    }
    Ok(())
}

/// The thread's kernel-side attributes.
pub fn set_thread(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    t: &ThreadImage,
) -> Result<(), RestoreError> {
    let ss = &t.altstack;
    let mut raw = Vec::with_capacity(24);
    let flags = if ss.flags & libc::SS_DISABLE != 0 {
        libc::SS_DISABLE
    } else {
        ss.flags & !libc::SS_ONSTACK
    };
    let (sp, size) = if flags & libc::SS_DISABLE != 0 {
        (0, 0)
    } else {
        (ss.sp, ss.size)
    };
    raw.extend_from_slice(&sp.to_ne_bytes());
    raw.extend_from_slice(&flags.to_ne_bytes());
    raw.extend_from_slice(&0i32.to_ne_bytes());
    raw.extend_from_slice(&size.to_ne_bytes());
    let at = scratch.put(remote, &raw)?;
    remote.syscall("sigaltstack", libc::SYS_sigaltstack, &[at, 0])?;
    scratch.reset();

    remote.syscall(
        "set_tid_address",
        libc::SYS_set_tid_address,
        &[t.clear_tid_address],
    )?;
    if t.robust_list.len != 0 {
        remote.syscall(
            "set_robust_list",
            libc::SYS_set_robust_list,
            &[t.robust_list.head, t.robust_list.len],
        )?;
    }
    if !t.comm.is_empty() {
        let name = scratch.put_cstr(remote, &t.comm)?;
        remote.syscall(
            &format!("prctl(PR_SET_NAME {})", t.comm),
            libc::SYS_prctl,
            &[libc::PR_SET_NAME as u64, name],
        )?;
        scratch.reset();
    }
    if let Some(r) = &t.rseq {
        remote.syscall(
            &format!("rseq register {:#x}", r.address),
            libc::SYS_rseq,
            &[r.address, r.len as u64, 0, r.signature as u64],
        )?;
    }
    Ok(())
}

/// Queues the pending signals again, each with its siginfo. The target
/// sends them to itself (which the kernel allows with any si_code). All
/// signals are blocked while restore runs, so they stay pending.
pub fn queue_signals(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    pid: i32,
    tid: i32,
    shared: &[PendingSignal],
    thread: &[PendingSignal],
) -> Result<(), RestoreError> {
    for (list, per_thread) in [(shared, false), (thread, true)] {
        for s in list {
            let info = hex::decode(&s.siginfo).map_err(|e| RestoreError::State {
                pid,
                reason: format!("pending signal {}: bad siginfo: {e}", s.signo),
            })?;
            let at = scratch.put(remote, &info)?;
            let what = format!("queue pending signal {}", s.signo);
            if per_thread {
                remote.syscall(
                    &what,
                    libc::SYS_rt_tgsigqueueinfo,
                    &[pid as u64, tid as u64, s.signo as u64, at],
                )?;
            } else {
                remote.syscall(
                    &what,
                    libc::SYS_rt_sigqueueinfo,
                    &[pid as u64, s.signo as u64, at],
                )?;
            }
            scratch.reset();
        }
    }
    Ok(())
}

/// `struct __user_cap_header_struct` version 3 (64-bit sets).
const CAP_VERSION_3: u32 = 0x2008_0522;
const SECBIT_KEEP_CAPS: u32 = 1 << 4;

/// What the restorer may hand out: its own permitted capabilities and the
/// highest capability number of this kernel.
#[derive(Clone, Copy, Debug)]
pub struct CapLimits {
    pub permitted: u64,
    pub last_cap: u32,
}

impl CapLimits {
    /// This process's permitted set (`/proc/self/status`) and
    /// `/proc/sys/kernel/cap_last_cap`.
    pub fn of_self() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let permitted = status
            .lines()
            .find_map(|l| l.strip_prefix("CapPrm:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(40);
        Self {
            permitted,
            last_cap,
        }
    }
}

/// Credentials, last, in one thread (credentials are per thread: each
/// thread of the process runs this): the bounding set is cut down and the
/// securebits set while the thread is still privileged, then groups and
/// ids (capabilities kept across the uid change), then the capability sets,
/// the ambient set, and no_new_privs. After this the thread may no longer
/// be allowed to do the privileged steps above.
pub fn set_creds(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    p: &ProcessImage,
    limits: CapLimits,
) -> Result<(), RestoreError> {
    let c = &p.creds;
    if let Some(k) = &c.caps {
        for cap in 0..=limits.last_cap.min(63) {
            if k.bounding & (1 << cap) == 0 {
                let what = format!("prctl(PR_CAPBSET_DROP, {cap})");
                let r = remote.raw_syscall(
                    &what,
                    libc::SYS_prctl,
                    &[libc::PR_CAPBSET_DROP as u64, cap as u64],
                )?;
                // A capability this kernel does not know is not there.
                if r != -(libc::EINVAL as i64) {
                    remote.check(&what, r)?;
                }
            }
        }
        // Capabilities survive the uid change below only with KEEP_CAPS.
        let bits = k.securebits | SECBIT_KEEP_CAPS;
        remote.syscall(
            &format!("prctl(PR_SET_SECUREBITS, {bits:#x})"),
            libc::SYS_prctl,
            &[libc::PR_SET_SECUREBITS as u64, bits as u64],
        )?;
    }
    let groups: Vec<u8> = c.groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
    let at = if groups.is_empty() {
        0
    } else {
        scratch.put(remote, &groups)?
    };
    remote.syscall(
        "setgroups",
        libc::SYS_setgroups,
        &[c.groups.len() as u64, at],
    )?;
    scratch.reset();
    remote.syscall(
        "setresgid",
        libc::SYS_setresgid,
        &[c.gid[0] as u64, c.gid[1] as u64, c.gid[2] as u64],
    )?;
    remote.syscall("setfsgid", libc::SYS_setfsgid, &[c.gid[3] as u64])?;
    remote.syscall(
        "setresuid",
        libc::SYS_setresuid,
        &[c.uid[0] as u64, c.uid[1] as u64, c.uid[2] as u64],
    )?;
    remote.syscall("setfsuid", libc::SYS_setfsuid, &[c.uid[3] as u64])?;
    let Some(k) = &c.caps else {
        return Ok(());
    };
    let (eff, prm, inh) = (
        k.effective & limits.permitted,
        k.permitted & limits.permitted,
        k.inheritable & limits.permitted,
    );
    if (eff, prm, inh) != (k.effective, k.permitted, k.inheritable) {
        tracing::warn!(
            pid = remote.pid(),
            missing = format!(
                "{:#x}",
                (k.permitted | k.effective | k.inheritable) & !limits.permitted
            ),
            "capabilities the restorer does not have are left out"
        );
    }
    let mut raw = Vec::with_capacity(8 + 24);
    raw.extend_from_slice(&CAP_VERSION_3.to_ne_bytes());
    raw.extend_from_slice(&0i32.to_ne_bytes());
    for half in [0u32, 32] {
        for set in [eff, prm, inh] {
            raw.extend_from_slice(&((set >> half) as u32).to_ne_bytes());
        }
    }
    let hdr = scratch.put(remote, &raw)?;
    remote.syscall(
        &format!("capset(eff {eff:#x}, prm {prm:#x}, inh {inh:#x})"),
        libc::SYS_capset,
        &[hdr, hdr + 8],
    )?;
    scratch.reset();
    for cap in 0..=limits.last_cap.min(63) {
        if k.ambient & (1 << cap) != 0 && prm & inh & (1 << cap) != 0 {
            remote.syscall(
                &format!("prctl(PR_CAP_AMBIENT_RAISE, {cap})"),
                libc::SYS_prctl,
                &[
                    libc::PR_CAP_AMBIENT as u64,
                    libc::PR_CAP_AMBIENT_RAISE as u64,
                    cap as u64,
                    0,
                    0,
                ],
            )?;
        }
    }
    if k.securebits & SECBIT_KEEP_CAPS == 0 {
        // Needs no privilege (unless the bit is locked).
        let r = remote.raw_syscall(
            "prctl(PR_SET_KEEPCAPS, 0)",
            libc::SYS_prctl,
            &[libc::PR_SET_KEEPCAPS as u64, 0],
        )?;
        if r < 0 {
            tracing::warn!(
                pid = remote.pid(),
                errno = -r,
                "KEEP_CAPS could not be cleared again"
            );
        }
    }
    if k.no_new_privs {
        remote.syscall(
            "prctl(PR_SET_NO_NEW_PRIVS)",
            libc::SYS_prctl,
            &[libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Creds, FileRef, MmFields, Rlimit};
    use crate::sys::remote::fake::FakeRemote;

    fn process(rlimits: Vec<Rlimit>) -> ProcessImage {
        ProcessImage {
            pid: 1,
            ppid: 0,
            pgid: 1,
            sid: 1,
            comm: "x".into(),
            exe: FileRef {
                path: "/x".into(),
                dev: 0,
                ino: 0,
                size: 0,
                mtime_ns: 0,
            },
            creds: Creds {
                uid: [0; 4],
                gid: [0; 4],
                groups: vec![],
                caps: None,
            },
            cwd: "/work".into(),
            root: "/jail".into(),
            umask: 0o22,
            personality: 0,
            rlimits,
            mm: MmFields::default(),
            vmas: vec![],
            threads: vec![],
            sigactions: vec![],
            shared_pending: vec![],
            files: vec![],
            fds: vec![],
            memfds: vec![],
            cuda: None,
        }
    }

    #[test]
    fn cwd_is_entered_before_chroot() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x1000, 0x10000);
        set_attributes(&mut fake, &mut scratch, &process(vec![])).unwrap();
        let chdir = fake
            .calls
            .iter()
            .position(|c| c.1 == libc::SYS_chdir)
            .unwrap();
        let chroot = fake
            .calls
            .iter()
            .position(|c| c.1 == libc::SYS_chroot)
            .unwrap();
        assert!(chdir < chroot);
    }

    #[test]
    fn a_hard_limit_that_cannot_be_raised_keeps_the_current_one() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x1000, 0x10000);
        let lim = Rlimit {
            resource: libc::RLIMIT_NOFILE,
            name: "nofile".into(),
            soft: 1 << 20,
            hard: 1 << 20,
        };
        let what = "prlimit nofile soft 1048576 hard 1048576".to_string();
        fake.results
            .insert(what.clone(), vec![-(libc::EPERM as i64)]);
        set_attributes(&mut fake, &mut scratch, &process(vec![lim])).unwrap();
        let calls: Vec<_> = fake.calls.iter().filter(|c| c.0 == what).collect();
        assert_eq!(calls.len(), 3, "set, read current, set lowered");
        assert_eq!(calls[1].2[2], 0, "second call reads the current limit");
        assert_ne!(calls[2].2[2], 0, "third call sets the new one");
    }
}
