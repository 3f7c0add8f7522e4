//! Restore: morph a stopped stub into the checkpointed process, from
//! outside, through syscalls injected via its trampoline.
//!
//! Everything that can be checked without a process (the image's
//! integrity, the files it maps) is checked first; after that the stub is
//! killed on any error ([`stub::Stub`]'s `Drop`, and `PTRACE_O_EXITKILL`
//! if snaprun itself dies), so a failed restore leaves no process behind.

pub mod fds;
pub mod memory;
pub mod process;
pub mod stub;

use std::io;
use std::path::Path;

use crate::image::{FileKind, FileRef, Image, ImageError, VmaKind};
use crate::sys::remote::{InjectMode, Injector, Remote, RemoteError, Scratch};
use crate::sys::{ptrace, resume_regs, PAGE_SIZE};
use crate::{hex, Timings};

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
pub struct RestoreOptions {}

/// What a restore did.
#[derive(Clone, Debug)]
pub struct RestoreReport {
    pub pid: i32,
    /// Whether the process got its original pid.
    pub pid_kept: bool,
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
pub fn restore(dir: &Path, _opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let mut t = Timings::new();
    t.phase("load");
    let image = Image::open(dir)?;
    let p = &image.manifest.processes[0];
    let thread = &p.threads[0];
    let xsave = hex::decode(&thread.xsave).map_err(|e| RestoreError::State {
        pid: p.pid,
        reason: format!("bad XSAVE area in the manifest: {e}"),
    })?;

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
            | FileKind::Fifo { path, .. } => {
                std::fs::metadata(path).map_err(|source| RestoreError::FileMissing {
                    path: path.clone(),
                    source,
                })?;
            }
            FileKind::Pipe { .. }
            | FileKind::TcpListen { .. }
            | FileKind::Deleted { .. }
            | FileKind::EventFd { .. }
            | FileKind::Memfd { .. }
            | FileKind::TimerFd { .. }
            | FileKind::SignalFd { .. }
            | FileKind::Epoll { .. }
            | FileKind::Inotify { .. } => {}
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
    let stub = Stub::spawn(p.pid, tramp)?;
    let pid = stub.pid;
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
    inj.set_stack(tramp + TRAMPOLINE_LEN - 256);
    let mut scratch = Scratch::new(tramp + PAGE_SIZE, TRAMPOLINE_LEN - 2 * PAGE_SIZE);
    // Lift the stub's fd limit for the duration, so fds can be placed at
    // any number the process had.
    raise_nofile(pid);

    t.phase("address-space");
    process::unregister_stub_rseq(&mut inj)?;
    fds::close_all(&mut inj)?;
    memory::clear_and_place_vdso(&mut inj, tramp, &p.vmas)?;
    memory::check_vdso(pid, &p.vmas)?;
    let memfds = fds::create_memfds(&mut inj, &mut scratch, &image, p)?;
    memory::map_vmas(&mut inj, &mut scratch, &p.vmas, &memfds)?;

    t.phase("memory");
    let pages_bytes = memory::fill_pages(&mut inj, &image, &p.vmas)?;

    t.phase("mm");
    memory::finish_vmas(&mut inj, &p.vmas)?;
    memory::set_mm(&mut inj, &mut scratch, p)?;

    t.phase("files");
    fds::restore_fds(&mut inj, &mut scratch, &image, p, &memfds)?;
    memfds.close(&mut inj)?;

    t.phase("process");
    process::set_attributes(&mut inj, &mut scratch, p)?;
    process::set_sigactions(&mut inj, &mut scratch, p)?;
    process::set_thread(&mut inj, &mut scratch, thread)?;
    process::queue_signals(
        &mut inj,
        &mut scratch,
        pid,
        pid,
        &p.shared_pending,
        &thread.pending,
    )?;
    process::set_creds(&mut inj, &mut scratch, p)?;

    t.phase("resume");
    // The last injected call removes the trampoline itself, so it must stop
    // at syscall exit, before returning to the unmapped page.
    inj.set_mode(InjectMode::SyscallStops);
    inj.syscall(
        "munmap(trampoline)",
        libc::SYS_munmap,
        &[tramp, TRAMPOLINE_LEN],
    )?;
    ptrace::set_sigmask(pid, thread.sigmask).map_err(ptrace_err("SETSIGMASK"))?;
    ptrace::set_xstate(pid, &xsave).map_err(|source| RestoreError::State {
        pid,
        reason: format!(
            "the CPU refused the saved XSAVE state ({source}); snapshot taken on another CPU?"
        ),
    })?;
    ptrace::set_regs(pid, &resume_regs(&thread.regs)).map_err(ptrace_err("SETREGS"))?;
    ptrace::detach(pid, 0).map_err(ptrace_err("DETACH"))?;
    let pid_kept = stub.pid_kept;
    stub.release();
    t.end();
    if p.vmas.iter().all(|v| v.kind != VmaKind::Vdso) {
        tracing::warn!(pid, "snapshot has no vDSO");
    }
    Ok(RestoreReport {
        pid,
        pid_kept,
        pages_bytes,
        timings: t,
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
