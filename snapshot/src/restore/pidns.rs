//! A fresh PID namespace to restore into when the snapshot's ids are taken
//! on the host (or when asked): every process and thread gets its original
//! id inside it, as glibc's cached tids need.
//!
//! A PID namespace needs a pid 1, and ends (SIGKILL to every member) when
//! that pid 1 exits. So snaprun forks a tiny init into the new namespace
//! (`clone3(CLONE_NEWPID)`), enters the namespace for its own children
//! (`setns(pidfd, CLONE_NEWPID)`) and creates the stub there. The init:
//!
//! 1. waits for snaprun to say the stub exists (end of file on a pipe;
//!    until then the namespace may have no other member);
//! 2. reaps any child it gets and, while it has none, checks every 50 ms
//!    whether the namespace still has a member (`kill(-1, 0)`);
//! 3. exits when the namespace is empty.
//!
//! The restored process's parent is the restorer, as without a namespace:
//! when the restorer exits, the kernel hands its orphans to the reaper of
//! the restorer's own namespace (init or a subreaper on the host), not to
//! this init.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::stub::CloneArgs;
use super::RestoreError;

/// How restore chooses between the host's PID namespace and a new one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PidNsMode {
    /// The host's, when every pid and tid of the snapshot is free there;
    /// otherwise a new namespace (with a message).
    #[default]
    Auto,
    /// Always a new namespace.
    New,
}

/// The new namespace's init, seen from the restorer.
pub struct PidNs {
    /// The init's pid in the restorer's namespace.
    pub init_pid: i32,
    pidfd: OwnedFd,
    /// Closing this tells the init that the stub exists.
    go: Option<OwnedFd>,
}

impl PidNs {
    /// Forks the init into a new PID namespace.
    pub fn create() -> Result<Self, RestoreError> {
        let spawn_err = |what: &str, e: io::Error| {
            RestoreError::Spawn(io::Error::new(
                e.kind(),
                format!("new PID namespace: {what}: {e}"),
            ))
        };
        let mut ends = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the live array.
        if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(spawn_err("pipe2", io::Error::last_os_error()));
        }
        // SAFETY: both are fresh descriptors returned by the kernel.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        let mut pidfd: i32 = -1;
        let args = CloneArgs {
            flags: (libc::CLONE_NEWPID | libc::CLONE_PIDFD) as u64,
            pidfd: &mut pidfd as *mut i32 as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..Default::default()
        };
        // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
        // this process and runs only `init_main`, which makes raw syscalls
        // and never returns; `pidfd` is a live local the kernel writes.
        let pid = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if pid < 0 {
            return Err(spawn_err(
                "clone3(CLONE_NEWPID)",
                io::Error::last_os_error(),
            ));
        }
        if pid == 0 {
            init_main(r.as_raw_fd(), w.as_raw_fd());
        }
        drop(r);
        // SAFETY: the kernel stored a fresh pidfd for the child.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        Ok(Self {
            init_pid: pid as i32,
            pidfd,
            go: Some(w),
        })
    }

    /// Makes the children this process creates from now on members of the
    /// namespace.
    pub fn enter(&self) -> Result<(), RestoreError> {
        // SAFETY: setns with a pidfd we own; no memory involved.
        if unsafe { libc::setns(self.pidfd.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            let e = io::Error::last_os_error();
            return Err(RestoreError::Spawn(io::Error::new(
                e.kind(),
                format!(
                    "entering the new PID namespace of init {}: {e}",
                    self.init_pid
                ),
            )));
        }
        Ok(())
    }

    /// Lets the init go on to reap: the namespace now has its members (or
    /// restore failed and it has none, and the init exits).
    pub fn release(&mut self) {
        self.go = None;
    }
}

impl Drop for PidNs {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether a pid or tid is in use in the restorer's PID namespace.
pub fn id_in_use(id: i32) -> bool {
    std::path::Path::new(&format!("/proc/{id}")).exists()
}

/// The init of the new namespace. Only raw syscalls: the child of a fork
/// may not allocate or take locks.
fn init_main(go_read: i32, go_write: i32) -> ! {
    // SAFETY: raw syscalls on the child's own fds and memory (the live
    // locals `byte`, `status` and `ts`).
    unsafe {
        libc::close(go_write);
        // Nothing else of the restorer's: a caller reading its stdout to
        // the end must not wait for the init.
        if go_read > 0 {
            libc::syscall(libc::SYS_close_range, 0u32, (go_read - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (go_read + 1) as u32, u32::MAX, 0u32);
        let mut byte = 0u8;
        loop {
            let n = libc::read(go_read, (&mut byte as *mut u8).cast(), 1);
            if n == 0 || (n < 0 && *libc::__errno_location() != libc::EINTR) {
                break;
            }
        }
        libc::close(go_read);
        let mut code = 0;
        loop {
            let mut status = 0;
            let r = libc::waitpid(-1, &mut status, libc::__WALL);
            if r > 0 {
                code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                continue;
            }
            if *libc::__errno_location() == libc::EINTR {
                continue;
            }
            // No child: done when no other process is left in the
            // namespace (kill(-1, 0) reaches every member but the init).
            if libc::kill(-1, 0) != 0 {
                libc::_exit(code);
            }
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
}
