//! The container process's attributes: rlimits, user and groups, the
//! executable's lookup in PATH, and the final execve.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};

use super::error::{Error, Result};
use super::spec::{Process, Rlimit, User};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_AS" => Resource::RLIMIT_AS,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_CPU" => Resource::RLIMIT_CPU,
        "RLIMIT_DATA" => Resource::RLIMIT_DATA,
        "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => Resource::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => Resource::RLIMIT_NICE,
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_RSS" => Resource::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => Resource::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// Checks the rlimit names (before anything is started).
pub fn check_rlimits(limits: &[Rlimit]) -> Result<()> {
    for (i, l) in limits.iter().enumerate() {
        if resource(&l.kind).is_none() {
            return Err(Error::invalid(
                format!("process.rlimits[{i}].type"),
                format!("unknown rlimit {:?}", l.kind),
            ));
        }
        if l.soft > l.hard {
            return Err(Error::invalid(
                format!("process.rlimits[{i}]"),
                format!(
                    "{}: soft limit {} above hard limit {}",
                    l.kind, l.soft, l.hard
                ),
            ));
        }
    }
    Ok(())
}

pub fn set_rlimits(limits: &[Rlimit]) -> Result<()> {
    for l in limits {
        let Some(r) = resource(&l.kind) else { continue };
        setrlimit(r, l.soft, l.hard).map_err(|e| {
            Error::sys(
                format!("process.rlimits: set {} to {}/{}", l.kind, l.soft, l.hard),
                e,
            )
        })?;
    }
    Ok(())
}

pub fn set_oom_score_adj(adj: i32) -> Result<()> {
    std::fs::write("/proc/self/oom_score_adj", adj.to_string())
        .map_err(|e| Error::io("process.oomScoreAdj: write", "/proc/self/oom_score_adj", e))
}

/// Changes to the container's user, keeping capabilities across the change
/// (they are set right after).
pub fn set_user(u: &User) -> Result<()> {
    nix::sys::prctl::set_keepcaps(true).map_err(|e| Error::sys("prctl PR_SET_KEEPCAPS", e))?;
    let groups: Vec<Gid> = u
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is refused in a user namespace whose setgroups file says deny.
    match setgroups(&groups) {
        Err(nix::Error::EPERM) if groups.is_empty() => {}
        r => r.map_err(|e| Error::sys("process.user.additionalGids: setgroups", e))?,
    }
    let gid = Gid::from_raw(u.gid);
    setresgid(gid, gid, gid)
        .map_err(|e| Error::sys(format!("process.user.gid: setgid {}", u.gid), e))?;
    let uid = Uid::from_raw(u.uid);
    setresuid(uid, uid, uid)
        .map_err(|e| Error::sys(format!("process.user.uid: setuid {}", u.uid), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| Error::sys("prctl PR_SET_KEEPCAPS", e))?;
    if let Some(m) = u.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    Ok(())
}

/// The value of VAR in an environment list.
pub fn env_var<'a>(env: &'a [String], var: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(var).and_then(|r| r.strip_prefix('=')))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `args[0]` as the container sees it (after the root switch), in the
/// PATH of the process's environment.
pub fn find_executable(p: &Process) -> Result<PathBuf> {
    let Some(name) = p.args.first() else {
        return Err(Error::invalid("process.args", "empty"));
    };
    if name.contains('/') {
        let path = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            Path::new(&p.cwd).join(name)
        };
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Error::Exec(format!("{name:?}: no such executable file")))
        };
    }
    let path = env_var(&p.env, "PATH").unwrap_or(DEFAULT_PATH);
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(name))
        .find(|c| is_executable(c))
        .ok_or_else(|| Error::Exec(format!("{name:?}: executable file not found in $PATH")))
}

fn cstrings(v: &[String], field: &str) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| Error::invalid(field, "holds a NUL byte")))
        .collect()
}

/// Gives the program a clean signal state: an ignored signal stays ignored
/// across execve (the Rust runtime ignores SIGPIPE, and the runtime's caller
/// may ignore others), so every signal goes back to its default; nothing is
/// blocked.
fn reset_signals() -> Result<()> {
    use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
    // The kernel's struct sigaction, x86-64 layout (not the C library's,
    // whose wrapper refuses the real-time signals it keeps for itself).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }
    const _: () = assert!(std::mem::size_of::<KernelSigaction>() == 32);
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: DFL is a valid kernel sigaction that lives for the call and
        // installs no handler code; the size is the kernel's sigset size.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Error::sys("clear the signal mask", e))
}

/// Replaces this process with the container's program.
pub fn exec(path: &Path, p: &Process) -> Result<Infallible> {
    reset_signals()?;
    let prog = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::invalid("process.args[0]", "holds a NUL byte"))?;
    let args = cstrings(&p.args, "process.args")?;
    let env = cstrings(&p.env, "process.env")?;
    nix::unistd::execve(&prog, &args, &env)
        .map_err(|e| Error::sys(format!("exec {}", path.display()), e))
}

/// Marks every fd from FIRST on close-on-exec.
pub fn cloexec_from(first: u32) {
    // SAFETY: close_range only changes fd flags; no memory is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Kernels before 5.11: mark them one by one.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd >= first as i32)
                .collect();
            for fd in fds {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rlimit_names_are_checked() {
        let bad = [Rlimit {
            kind: "RLIMIT_FOO".into(),
            hard: 1,
            soft: 1,
        }];
        let msg = check_rlimits(&bad).unwrap_err().to_string();
        assert!(msg.contains("process.rlimits[0].type"), "{msg}");
    }

    #[test]
    fn env_lookup_takes_the_last() {
        let env = vec!["PATH=/a".to_string(), "PATHX=1".into(), "PATH=/b".into()];
        assert_eq!(env_var(&env, "PATH"), Some("/b"));
        assert_eq!(env_var(&env, "HOME"), None);
    }
}
