//! Restore: morph a stopped stub into the checkpointed process, from
//! outside, through syscalls injected via its trampoline.
//!
//! Everything that can be checked without a process (the image's
//! integrity, the files it maps) is checked first; after that the stub is
//! killed on any error ([`stub::Stub`]'s `Drop`, and `PTRACE_O_EXITKILL`
//! if snaprun itself dies), so a failed restore leaves no process behind.

pub mod fds;
pub mod memory;
pub mod pidns;
pub mod process;
pub mod stub;
pub mod threads;

use std::io;
use std::path::Path;

use crate::image::{FileKind, FileRef, Image, ImageError, VmaKind};
use crate::sys::remote::{InjectMode, Injector, Remote, RemoteError, Scratch};
use crate::sys::{ptrace, resume_regs, PAGE_SIZE};
use crate::{hex, Timings};

use pidns::{PidNs, PidNsMode};
use stub::{Stub, TRAMPOLINE_LEN};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error("{path}: {what} changed since the checkpoint (restoring onto another file would corrupt the process)")]
    FileChanged { path: String, what: String },
    #[error("{path}: needed by the snapshot: {source}")]
    FileMissing { path: String, source: io::Error },
    #[error("creating the process: {0}")]
    Spawn(io::Error),
    #[error("pid {pid}: {reason}")]
    State { pid: i32, reason: String },
    #[error("pid {pid} fd {fd}: {reason}")]
    Fd { pid: i32, fd: i32, reason: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Where the process's ids come from: the host's PID namespace or a
    /// new one.
    pub pid_ns: PidNsMode,
}

/// A restore into a new PID namespace.
#[derive(Clone, Debug)]
pub struct NewPidNs {
    /// The namespace's init, in the restorer's namespace.
    pub init_pid: i32,
    /// The restored process's pid inside the namespace.
    pub inner_pid: i32,
    /// Ids of the snapshot that were in use on the host (empty when the
    /// namespace was asked for).
    pub taken: Vec<i32>,
}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    /// The restored process's pid in the restorer's PID namespace.
    pub pid: i32,
    /// Whether the process and its threads got their original ids (in
    /// their own PID namespace).
    pub pid_kept: bool,
    /// Set when the process was restored into a new PID namespace.
    pub pid_ns: Option<NewPidNs>,
    pub pages_bytes: u64,
    pub timings: Timings,
}

/// Checks that a file the snapshot refers to is still the same file.
fn check_file(f: &FileRef, strict: bool) -> Result<(), RestoreError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&f.path).map_err(|source| RestoreError::FileMissing {
        path: f.path.clone(),
        source,
    })?;
    if !strict {
        return Ok(());
    }
    let mtime = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    if meta.size() != f.size {
        return Err(RestoreError::FileChanged {
            path: f.path.clone(),
            what: format!("size ({} then, {} now)", f.size, meta.size()),
        });
    }
    if mtime != f.mtime_ns {
        return Err(RestoreError::FileChanged {
            path: f.path.clone(),
            what: "modification time".into(),
        });
    }
    if meta.ino() != f.ino {
        tracing::debug!(path = %f.path, "same size and mtime but another inode");
    }
    Ok(())
}

/// Restores the snapshot in `dir` and returns once the process runs.
pub fn restore(dir: &Path, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let mut t = Timings::new();
    t.phase("load");
    let image = Image::open(dir)?;
    restore_image(image, t, opts)
}

/// Restores an opened snapshot (an image directory or a named snapshot in
/// a store) and returns once the process runs.
pub fn restore_from(image: Image, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let mut t = Timings::new();
    t.phase("load");
    restore_image(image, t, opts)
}

fn restore_image(
    image: Image,
    mut t: Timings,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let p = &image.manifest.processes[0];
    let thread = match p.threads.first() {
        Some(t) if t.tid == p.pid => t,
        _ => {
            return Err(RestoreError::State {
                pid: p.pid,
                reason: "the manifest's first thread is not the process's leader".into(),
            })
        }
    };
    let xsaves = p
        .threads
        .iter()
        .map(|t| {
            hex::decode(&t.xsave).map_err(|e| RestoreError::State {
                pid: p.pid,
                reason: format!("thread {}: bad XSAVE area in the manifest: {e}", t.tid),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    t.phase("check-files");
    check_file(&p.exe, true)?;
    for v in &p.vmas {
        if let Some(f) = &v.file {
            check_file(f, true)?;
        }
    }
    for f in &p.files {
        match &f.kind {
            FileKind::Regular { file, .. } => check_file(file, false)?,
            FileKind::Directory { path, .. }
            | FileKind::CharDevice { path, .. }
            | FileKind::Fifo { path } => {
                std::fs::metadata(path).map_err(|source| RestoreError::FileMissing {
                    path: path.clone(),
                    source,
                })?;
            }
            FileKind::Pipe { .. }
            | FileKind::TcpListen { .. }
            | FileKind::Deleted { .. }
            | FileKind::EventFd { .. } => {}
        }
    }

    t.phase("stub");
    let mut occupied: Vec<(u64, u64)> = p.vmas.iter().map(|v| (v.start, v.end)).collect();
    occupied.extend(stub::own_ranges().map_err(|source| RestoreError::Io {
        what: "reading /proc/self/maps".into(),
        source,
    })?);
    let tramp =
        stub::choose_trampoline(&occupied, TRAMPOLINE_LEN).ok_or_else(|| RestoreError::State {
            pid: p.pid,
            reason: "no free address range for the restore trampoline".into(),
        })?;
    let mut taken: Vec<i32> = p
        .threads
        .iter()
        .map(|t| t.tid)
        .filter(|&id| pidns::id_in_use(id))
        .collect();
    let mut ns = match opts.pid_ns {
        PidNsMode::New => {
            taken.clear();
            Some(PidNs::create()?)
        }
        PidNsMode::Auto if !taken.is_empty() => {
            tracing::info!(
                ?taken,
                "ids in use on the host; restoring in a new PID namespace"
            );
            Some(PidNs::create()?)
        }
        PidNsMode::Auto => None,
    };
    if ns.is_some() && p.threads.iter().any(|t| t.tid == 1) {
        return Err(RestoreError::State {
            pid: p.pid,
            reason:
                "the snapshot's process was pid 1 (a container's init): restore it as a container"
                    .into(),
        });
    }
    let mut stub = match &ns {
        Some(ns) => {
            let back = own_pid_ns()?;
            ns.enter()?;
            let stub = Stub::spawn(p.pid, tramp);
            leave_pid_ns(&back)?;
            stub?
        }
        None => Stub::spawn(p.pid, tramp)?,
    };
    let pid = stub.pid;
    // The ids the process sees, for the calls it makes about itself.
    let inner_pid = inner_id(pid)?;
    let ptrace_err = |what: &'static str| {
        move |source| {
            RestoreError::Remote(RemoteError::Ptrace {
                pid,
                op: what,
                source,
            })
        }
    };
    ptrace::set_sigmask(pid, !0).map_err(ptrace_err("SETSIGMASK"))?;
    let base = ptrace::get_regs(pid).map_err(ptrace_err("GETREGS"))?;
    let mut inj = Injector::new(pid, base, tramp, InjectMode::Trap)?;
    let stack = tramp + TRAMPOLINE_LEN - 256;
    inj.set_stack(stack);
    let mut scratch = Scratch::new(tramp + PAGE_SIZE, TRAMPOLINE_LEN - 2 * PAGE_SIZE);
    // Lift the stub's fd limit for the duration, so fds can be placed at
    // any number the process had.
    raise_nofile(pid);

    t.phase("address-space");
    process::unregister_stub_rseq(&mut inj)?;
    fds::close_all(&mut inj)?;
    memory::clear_and_place_vdso(&mut inj, tramp, &p.vmas)?;
    memory::check_vdso(pid, &p.vmas)?;
    memory::map_vmas(&mut inj, &mut scratch, &p.vmas)?;

    t.phase("memory");
    let pages_bytes = memory::fill_pages(&mut inj, &image, &p.vmas)?;

    t.phase("mm");
    memory::finish_vmas(&mut inj, &p.vmas)?;
    memory::set_mm(&mut inj, &mut scratch, p)?;

    t.phase("files");
    fds::restore_fds(&mut inj, &mut scratch, &image, p)?;

    t.phase("process");
    process::set_attributes(&mut inj, &mut scratch, p)?;
    process::set_sigactions(&mut inj, &mut scratch, p)?;
    process::set_thread(&mut inj, &mut scratch, thread)?;

    t.phase("threads");
    // Created after the signal handlers (shared) and with every signal
    // blocked (inherited from the leader, which ptrace blocked).
    let mut others = Vec::with_capacity(p.threads.len() - 1);
    for th in &p.threads[1..] {
        let mut new = threads::create(&mut inj, &mut scratch, th.tid, tramp, stack)?;
        stub.add_thread(new.tid);
        process::set_thread(&mut new.inj, &mut scratch, th)?;
        others.push((th, new));
    }
    process::queue_signals(
        &mut inj,
        &mut scratch,
        inner_pid,
        inner_pid,
        &p.shared_pending,
        &thread.pending,
    )?;
    // A thread-directed signal with a user si_code can only be queued by
    // the thread itself.
    for (th, new) in &mut others {
        process::queue_signals(
            &mut new.inj,
            &mut scratch,
            inner_pid,
            new.inner_tid,
            &[],
            &th.pending,
        )?;
    }
    process::set_creds(&mut inj, &mut scratch, p)?;

    t.phase("resume");
    // The last injected call removes the trampoline itself, so it must stop
    // at syscall exit, before returning to the unmapped page. Every other
    // thread is stopped meanwhile.
    inj.set_mode(InjectMode::SyscallStops);
    inj.syscall(
        "munmap(trampoline)",
        libc::SYS_munmap,
        &[tramp, TRAMPOLINE_LEN],
    )?;
    let tids: Vec<i32> = std::iter::once(pid)
        .chain(others.iter().map(|(_, n)| n.tid))
        .collect();
    // The leader last: once it runs, the process is out of our hands.
    for ((th, xsave), &tid) in p.threads.iter().zip(&xsaves).zip(&tids).rev() {
        resume_thread(tid, th, xsave)?;
    }
    let tids_kept = others.iter().all(|(_, n)| n.tid_kept);
    let pid_kept = stub.pid_kept && tids_kept;
    stub.release();
    let pid_ns = ns.as_mut().map(|ns| {
        ns.release();
        NewPidNs {
            init_pid: ns.init_pid,
            inner_pid,
            taken,
        }
    });
    t.end();
    if p.vmas.iter().all(|v| v.kind != VmaKind::Vdso) {
        tracing::warn!(pid, "snapshot has no vDSO");
    }
    Ok(RestoreReport {
        pid,
        pid_kept,
        pid_ns,
        pages_bytes,
        timings: t,
    })
}

/// Gives a stopped thread its saved mask, XSAVE state and registers (with
/// the restart rules applied), and lets it run.
fn resume_thread(
    tid: i32,
    th: &crate::image::ThreadImage,
    xsave: &[u8],
) -> Result<(), RestoreError> {
    let ptrace_err = |op: &'static str| {
        move |source| {
            RestoreError::Remote(RemoteError::Ptrace {
                pid: tid,
                op,
                source,
            })
        }
    };
    ptrace::set_sigmask(tid, th.sigmask).map_err(ptrace_err("SETSIGMASK"))?;
    ptrace::set_xstate(tid, xsave).map_err(|source| RestoreError::State {
        pid: tid,
        reason: format!(
            "the CPU refused the saved XSAVE state ({source}); snapshot taken on another CPU?"
        ),
    })?;
    ptrace::set_regs(tid, &resume_regs(&th.regs)).map_err(ptrace_err("SETREGS"))?;
    ptrace::detach(tid, 0).map_err(ptrace_err("DETACH"))
}

/// This process's own PID namespace, to come back to after creating the
/// stub in another.
fn own_pid_ns() -> Result<std::fs::File, RestoreError> {
    std::fs::File::open("/proc/self/ns/pid").map_err(|source| RestoreError::Io {
        what: "opening /proc/self/ns/pid".into(),
        source,
    })
}

fn leave_pid_ns(own: &std::fs::File) -> Result<(), RestoreError> {
    use std::os::fd::AsRawFd;
    // SAFETY: setns with an fd we own; no memory involved.
    if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
        return Err(RestoreError::Io {
            what: "returning to the restorer's PID namespace".into(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// A task's id in its own (innermost) PID namespace: the last field of
/// `NSpid` in its status.
fn inner_id(id: i32) -> Result<i32, RestoreError> {
    let path = format!("/proc/{id}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| RestoreError::Io {
        what: format!("reading {path}"),
        source,
    })?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|v| v.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| RestoreError::State {
            pid: id,
            reason: format!("no NSpid in {path}"),
        })
}

fn raise_nofile(pid: i32) {
    let mut cur = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit64 on our own child, with live locals.
    unsafe {
        if libc::prlimit64(pid, libc::RLIMIT_NOFILE, std::ptr::null(), &mut cur) == 0 {
            cur.rlim_cur = cur.rlim_max;
            libc::prlimit64(pid, libc::RLIMIT_NOFILE, &cur, std::ptr::null_mut());
        }
    }
}
