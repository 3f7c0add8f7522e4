//! Restore: morph a stopped stub into the checkpointed process, from
//! outside, through syscalls injected via its trampoline.
//!
//! Everything that can be checked without a process (the image's
//! integrity, the files it maps) is checked first; after that the stub is
//! killed on any error ([`stub::Stub`]'s `Drop`, and `PTRACE_O_EXITKILL`
//! if snaprun itself dies), so a failed restore leaves no process behind.

pub mod cuda;
pub mod fds;
pub mod memory;
pub mod pidns;
pub mod process;
pub mod stub;
pub mod threads;
pub mod tree;

use std::io;
use std::path::{Path, PathBuf};

use crate::image::{FileKind, FileRef, Image, ImageError, Manifest, ProcessImage, VmaKind};
use crate::pager::{LazyOptions, PagerClient, PagerError, PagerInfo, StartingPager};
use crate::sys::remote::{InjectMode, Injector, RemoteError};
use crate::sys::{ptrace, resume_regs};
use crate::Timings;

use pidns::{PidNs, PidNsMode};
use stub::{Stub, TRAMPOLINE_LEN};

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Pager(#[from] PagerError),
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
    #[error(transparent)]
    Cuda(#[from] cuda::CudaRestoreError),
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Where the process's ids come from: the host's PID namespace or a
    /// new one.
    pub pid_ns: PidNsMode,
    /// GPUs to restore CUDA processes onto (`--gpu-map OLD=NEW`).
    pub gpu_map: Vec<cuda_ckpt::GpuPair>,
    /// Restore into a stub the caller made (a container's init, see
    /// [`Adopt`]) instead of creating one; `pid_ns` is then not used.
    pub adopt: Option<Adopt>,
    /// For the snapshot's inherited descriptions (`FileKind::Inherited`):
    /// (the snapshot's fd, the restorer's fd that stands for it), e.g.
    /// `(1, 1)` to give the restorer's stdout (`fds/inherited.rs`).
    pub inherit_fds: Vec<(i32, i32)>,
    /// Serve private anonymous memory lazily through a pager instead of
    /// writing it before the resume.
    pub lazy: Option<LazyOptions>,
}

/// A stub made by the caller, already in the namespaces the snapshot is
/// restored into (a container's init, pid 1 of its PID namespace, with
/// the container's root and mounts). It is the caller's child, has run
/// [`stub::prepare_self`] with `trampoline` (from [`trampoline_for`]) and
/// stops itself with SIGSTOP. The snapshot's paths are then checked in its
/// view (`/proc/PID/root/PATH`), and `/proc` inside it is taken to be its
/// PID namespace's own.
#[derive(Clone, Copy, Debug)]
pub struct Adopt {
    pub pid: i32,
    pub trampoline: u64,
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
    /// Processes restored (the tree's live ones).
    pub processes: usize,
    /// Bytes of pages written before the resume.
    pub pages_bytes: u64,
    /// The pager of a lazy restore.
    pub pager: Option<PagerInfo>,
    pub timings: Timings,
}

/// Where the snapshot's PATH is seen from here: PATH itself, or under
/// the root of the process the snapshot is restored into.
fn seen(root: Option<&Path>, path: &str) -> PathBuf {
    match root {
        Some(r) => r.join(path.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// Checks that a file the snapshot refers to is still the same file.
fn check_file(f: &FileRef, strict: bool, root: Option<&Path>) -> Result<(), RestoreError> {
    use std::os::unix::fs::MetadataExt;
    let meta =
        std::fs::metadata(seen(root, &f.path)).map_err(|source| RestoreError::FileMissing {
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

/// Checks every file a process of the snapshot refers to, before any
/// process exists.
fn check_files(p: &ProcessImage, root: Option<&Path>) -> Result<(), RestoreError> {
    check_file(&p.exe, true, root)?;
    for v in &p.vmas {
        if let Some(f) = &v.file {
            check_file(f, true, root)?;
        }
    }
    for f in p.files.iter().filter(|f| f.shared.is_none()) {
        match &f.kind {
            FileKind::Regular { file, .. } => check_file(file, false, root)?,
            FileKind::Directory { path, .. }
            | FileKind::CharDevice { path, .. }
            | FileKind::Fifo { path, .. } => {
                std::fs::metadata(seen(root, path)).map_err(|source| {
                    RestoreError::FileMissing {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
            FileKind::Pipe { .. }
            | FileKind::InetSocket(_)
            | FileKind::UnixSocket(_)
            | FileKind::Deleted { .. }
            | FileKind::EventFd { .. }
            | FileKind::Memfd { .. }
            | FileKind::TimerFd { .. }
            | FileKind::SignalFd { .. }
            | FileKind::Epoll { .. }
            | FileKind::Inotify { .. }
            | FileKind::Inherited { .. } => {}
        }
    }
    Ok(())
}

/// Restores the snapshot in `dir` and returns once its processes run.
pub fn restore(dir: &Path, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let mut t = Timings::new();
    t.phase("load");
    let image = Image::open(dir)?;
    restore_image(image, t, opts)
}

/// Restores an opened snapshot (an image directory or a named snapshot in
/// a store) and returns once its processes run.
pub fn restore_from(image: Image, opts: &RestoreOptions) -> Result<RestoreReport, RestoreError> {
    let mut t = Timings::new();
    t.phase("load");
    restore_image(image, t, opts)
}

/// Where the trampoline goes for snapshot `m`: free in its layout and in
/// the restorer's own (a stub starts as a copy of the restorer).
pub fn trampoline_for(m: &Manifest) -> Result<u64, RestoreError> {
    let mut occupied: Vec<(u64, u64)> = m
        .processes
        .iter()
        .flat_map(|p| p.vmas.iter().map(|v| (v.start, v.end)))
        .collect();
    occupied.extend(stub::own_ranges().map_err(|source| RestoreError::Io {
        what: "reading /proc/self/maps".into(),
        source,
    })?);
    stub::choose_trampoline(&occupied, TRAMPOLINE_LEN).ok_or_else(|| RestoreError::State {
        pid: m.processes[0].pid,
        reason: "no free address range for the restore trampoline".into(),
    })
}

fn restore_image(
    image: Image,
    mut t: Timings,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let m = &image.manifest;
    let root = &m.processes[0];
    let adopted = opts.adopt;

    t.phase("check-files");
    let seen_root = adopted.map(|a| PathBuf::from(format!("/proc/{}/root", a.pid)));
    for p in &m.processes {
        check_files(p, seen_root.as_deref())?;
    }
    let gpu = cuda::prepare(m, &opts.gpu_map)?;

    // Started first, on a thread, so that it starts and opens the snapshot
    // while the stub, the tree and the address space are made.
    let mut pager = match &opts.lazy {
        Some(lazy) => {
            t.phase("pager");
            Some(PagerClient::spawn_in_background(&image, lazy)?)
        }
        None => None,
    };

    t.phase("stub");
    let tramp = match adopted {
        Some(a) => a.trampoline,
        None => trampoline_for(m)?,
    };
    let ids: Vec<i32> = m
        .processes
        .iter()
        .flat_map(|p| p.threads.iter().map(|t| t.tid))
        .chain(m.zombies.iter().map(|z| z.pid))
        .collect();
    let mut taken: Vec<i32> = ids
        .iter()
        .copied()
        .filter(|&id| adopted.is_none() && pidns::id_in_use(id))
        .collect();
    let mut ns = match opts.pid_ns {
        // The adopted stub already sits in the namespace to restore into.
        _ if adopted.is_some() => None,
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
    if ns.is_some() && ids.contains(&1) {
        return Err(RestoreError::State {
            pid: root.pid,
            reason:
                "the snapshot's process was pid 1 (a container's init): restore it as a container"
                    .into(),
        });
    }
    let mut stub = match (&ns, adopted) {
        (_, Some(a)) => Stub::adopt(a.pid, a.trampoline, root.pid)?,
        (Some(ns), None) => {
            let back = own_pid_ns()?;
            ns.enter()?;
            let stub = Stub::spawn(root.pid, tramp);
            leave_pid_ns(&back)?;
            stub?
        }
        (None, None) => Stub::spawn(root.pid, tramp)?,
    };
    let stack = tramp + TRAMPOLINE_LEN - 256;
    let pid = stub.pid;
    ptrace::set_sigmask(pid, !0).map_err(|source| RemoteError::Ptrace {
        pid,
        op: "SETSIGMASK",
        source,
    })?;
    let base = ptrace::get_regs(pid).map_err(|source| RemoteError::Ptrace {
        pid,
        op: "GETREGS",
        source,
    })?;
    let mut inj = Injector::new(pid, base, tramp, InjectMode::Trap)?;
    inj.set_stack(stack);
    let mut procs = vec![tree::Proc::new(root, pid, inj, tramp)?];

    t.phase("tree");
    tree::fork_children(&mut procs, m, &mut stub, tramp, stack)?;
    tree::make_zombies(&mut procs, &m.zombies, tramp, stack)?;
    tree::set_sessions(&mut procs)?;

    let mut files = fds::TreeFiles::default();
    let mut pages_bytes = 0;
    for i in 0..procs.len() {
        pages_bytes += morph(
            &image,
            &mut procs,
            i,
            &mut files,
            &mut stub,
            opts,
            pager.as_mut(),
            &mut t,
        )?;
    }

    if let Some(pg) = pager.as_mut() {
        t.phase("working-set");
        pg.get()?.wait_ready()?;
    }
    t.phase("resume");
    fds::close_parked(&mut procs, &mut files)?;
    let pager = pager
        .map(|p| p.into_client().and_then(PagerClient::resuming))
        .transpose()?;
    // Children first, each process's leader last: once the root runs, the
    // tree is out of our hands.
    for p in procs.iter_mut().rev() {
        p.resume()?;
    }
    if let Some(gpu) = gpu {
        // The processes run: the driver's restore works inside them. On
        // failure `stub` is dropped and kills them.
        t.phase("cuda");
        gpu.resume(|pid| procs.iter().find(|p| p.image.pid == pid).map(|p| p.pid))?;
    }
    let pid_kept = stub.pid_kept && procs.iter().all(|p| p.ids_kept());
    let inner_pid = procs[0].inner_pid;
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
    Ok(RestoreReport {
        pid,
        pid_kept,
        pid_ns,
        processes: procs.len(),
        pages_bytes,
        pager,
        timings: t,
    })
}

/// Turns the stub `procs[i]` into its process, but for the final resume:
/// address space, memory, mm, fds, attributes, threads, pending signals and
/// credentials. Returns the bytes of pages written (with a pager, it serves
/// the lazily restored mappings from their registration on).
#[allow(clippy::too_many_arguments)]
fn morph(
    image: &Image,
    procs: &mut [tree::Proc],
    i: usize,
    files: &mut fds::TreeFiles,
    stub: &mut Stub,
    opts: &RestoreOptions,
    pager: Option<&mut StartingPager>,
    t: &mut Timings,
) -> Result<u64, RestoreError> {
    let (earlier, rest) = procs.split_at_mut(i);
    let proc = &mut rest[0];
    let p = proc.image;
    let pid = proc.pid;
    let tramp = proc.trampoline;
    let stack = tramp + TRAMPOLINE_LEN - 256;
    let inj = &mut proc.inj;
    let scratch = &mut proc.scratch;
    // Lift the stub's fd limit for the duration, so fds can be placed at
    // any number the process had.
    raise_nofile(pid);

    t.phase("address-space");
    process::unregister_stub_rseq(inj)?;
    let inherited = fds::Inherited::park(inj, p, &opts.inherit_fds)?;
    fds::close_all_but(inj, &inherited.fds())?;
    memory::clear_and_place_vdso(inj, tramp, &p.vmas)?;
    memory::check_vdso(pid, &p.vmas)?;
    let memfds = fds::create_memfds(inj, scratch, image, p)?;
    let views: Vec<(i32, &[crate::image::Vma])> = earlier
        .iter()
        .map(|q| {
            // An adopted stub (a container's) sees its own PID namespace's
            // /proc, where the others have their inner pids.
            let seen_as = if opts.adopt.is_some() {
                q.inner_pid
            } else {
                q.pid
            };
            (seen_as, q.image.vmas.as_slice())
        })
        .collect();
    memory::map_vmas(inj, scratch, &p.vmas, &memfds, &views)?;

    t.phase("memory");
    let pages_bytes = match pager {
        Some(pg) => {
            pg.get()?.attach(inj, i, p)?;
            memory::fill_pages(inj, image, &crate::pager::eager_vmas(&p.vmas))?
        }
        None => memory::fill_pages(inj, image, &p.vmas)?,
    };

    t.phase("mm");
    memory::finish_vmas(inj, &p.vmas)?;
    memory::set_mm(inj, scratch, p)?;

    t.phase("files");
    let holders: Vec<(i32, i32)> = earlier.iter().map(|q| (q.image.pid, q.inner_pid)).collect();
    fds::restore_fds(inj, scratch, image, p, &memfds, files, &holders, &inherited)?;
    memfds.close(inj)?;
    inherited.close(inj)?;

    t.phase("process");
    process::set_attributes(inj, scratch, p)?;
    process::set_sigactions(inj, scratch, p)?;
    process::set_thread(inj, scratch, &p.threads[0])?;

    t.phase("threads");
    // Created after the signal handlers (shared) and with every signal
    // blocked (inherited from the leader, which ptrace blocked).
    for th in &p.threads[1..] {
        let mut new = threads::create(inj, scratch, th.tid, tramp, stack)?;
        stub.add_member(new.tid);
        process::set_thread(&mut new.inj, scratch, th)?;
        proc.threads.push(new);
    }
    let inner_pid = proc.inner_pid;
    process::queue_signals(
        &mut proc.inj,
        &mut proc.scratch,
        inner_pid,
        inner_pid,
        &p.shared_pending,
        &p.threads[0].pending,
    )?;
    // A thread-directed signal with a user si_code can only be queued by
    // the thread itself.
    for (th, new) in p.threads[1..].iter().zip(proc.threads.iter_mut()) {
        process::queue_signals(
            &mut new.inj,
            &mut proc.scratch,
            inner_pid,
            new.inner_tid,
            &[],
            &th.pending,
        )?;
    }
    // Credentials are per thread: each thread sets its own, the leader last.
    let limits = process::CapLimits::of_self();
    for new in proc.threads.iter_mut() {
        process::set_creds(&mut new.inj, &mut proc.scratch, p, limits)?;
    }
    process::set_creds(&mut proc.inj, &mut proc.scratch, p, limits)?;
    if p.vmas.iter().all(|v| v.kind != VmaKind::Vdso) {
        tracing::warn!(pid, "snapshot has no vDSO");
    }
    Ok(pages_bytes)
}

/// Gives a stopped thread its saved mask, XSAVE state and registers (with
/// the restart rules applied), and lets it run.
pub(super) fn resume_thread(
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
pub(super) fn inner_id(id: i32) -> Result<i32, RestoreError> {
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
