//! Checkpoint: freeze a process, read its state, write the image, then end
//! or resume it.
//!
//! Order matters for "a failed checkpoint loses nothing": everything that
//! can be refused (unsupported fds, mappings, threads) is checked before
//! the long memory copy, the process is resumed untouched on any error
//! ([`freeze::Frozen`]'s `Drop`), and it is ended only after the image is
//! durable.

pub mod cuda;
pub mod fds;
pub mod freeze;
pub mod memory;
pub mod pidns;
pub mod process;
pub mod threads;
pub mod tree;

use std::io;
use std::path::Path;

use crate::image::{
    Attachment, Digest, ImageError, ImageOptions, ImageTarget, ImageWriter, Manifest, ProcessImage,
    VmaKind, WriteStats,
};
use crate::sys::mem::{Pagemap, ProcMem};
use crate::sys::proc::parse_smaps;
use crate::sys::remote::{InjectMode, Injector, Remote, RemoteError, Scratch};
use crate::sys::{ptrace, PAGE_SIZE};
use crate::Timings;

use freeze::{Frozen, FrozenProcess};
use tree::FrozenTree;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("pid {pid}: no such process")]
    NoSuchProcess { pid: i32 },
    #[error("pid {pid} fd {fd}: {what} is not supported yet")]
    Unsupported { pid: i32, fd: i32, what: String },
    #[error("pid {pid}: {what} is not supported yet")]
    UnsupportedProcess { pid: i32, what: String },
    #[error("pid {pid} fd {fd}: {reason}")]
    Fd { pid: i32, fd: i32, reason: String },
    #[error("pid {pid}: reading {path}: {source}")]
    Proc {
        pid: i32,
        path: String,
        source: io::Error,
    },
    #[error("pid {pid}: {what}: {source}")]
    Ptrace {
        pid: i32,
        what: &'static str,
        source: io::Error,
    },
    #[error("pid {pid}: reading memory {start:#x}-{end:#x}: {source}")]
    Memory {
        pid: i32,
        start: u64,
        end: u64,
        source: io::Error,
    },
    #[error("pid {pid}: {reason}")]
    State { pid: i32, reason: String },
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Cuda(#[from] cuda::CudaDumpError),
    /// The caller's hook ([`checkpoint_with`]) refused or failed.
    #[error(transparent)]
    Caller(Box<dyn std::error::Error + Send + Sync>),
}

#[derive(Clone, Debug, Default)]
pub struct CheckpointOptions {
    /// Resume the process afterwards instead of ending it.
    pub leave_running: bool,
    /// Keep open TCP connections as closed ones instead of refusing them.
    pub tcp_close: bool,
    /// Chunking and compression of the page data.
    pub image: ImageOptions,
    /// How long the CUDA driver's lock of a CUDA process may wait for its
    /// GPU work (default [`cuda_ckpt::DEFAULT_LOCK_TIMEOUT`]).
    pub cuda_lock_timeout: Option<std::time::Duration>,
    /// Record the ids the tree sees in its own PID namespace (a
    /// container's) instead of the dumper's (`pidns.rs`).
    pub own_pid_ns: bool,
    /// Fds of the root whose open file descriptions are not saved but
    /// recorded as inherited (`FileKind::Inherited`), in the root and in
    /// every process that shares them: restore hands over descriptions of
    /// its own in their place (a container's stdio, which leads outside
    /// the container).
    pub inherit_fds: Vec<i32>,
}

/// What a checkpoint wrote.
#[derive(Clone, Debug)]
pub struct CheckpointReport {
    pub timings: Timings,
    /// Processes in the tree (the zombies not counted).
    pub processes: usize,
    /// Threads of all of them.
    pub threads: usize,
    pub vmas: usize,
    pub pages_bytes: u64,
    pub fds: usize,
    /// What the store kept: new, deduplicated and zero bytes.
    pub stored: WriteStats,
    /// The snapshot's root in the store.
    pub root: Digest,
}

/// Checkpoints process `pid` into the image directory `dir`.
pub fn checkpoint(
    pid: i32,
    dir: &Path,
    opts: &CheckpointOptions,
) -> Result<CheckpointReport, DumpError> {
    checkpoint_to(pid, &ImageTarget::Dir(dir.to_path_buf()), opts)
}

/// Checkpoints process `pid` into an image directory or a named snapshot.
pub fn checkpoint_to(
    pid: i32,
    target: &ImageTarget,
    opts: &CheckpointOptions,
) -> Result<CheckpointReport, DumpError> {
    checkpoint_with(pid, target, opts, &mut |_, _| Ok(Vec::new()))
}

/// The processes of a frozen tree, for a [`checkpoint_with`] hook.
#[derive(Clone, Debug)]
pub struct TreePids {
    /// The live processes, the root first.
    pub live: Vec<i32>,
    /// Exited children not reaped yet.
    pub zombies: Vec<i32>,
}

/// A caller's step run once the whole tree is frozen, before anything of
/// it is dumped: it may refuse the checkpoint (an error resumes the tree
/// unchanged) or store data of its own, returned as attachments that the
/// manifest keeps (a container's tmpfs contents).
pub type FrozenHook<'a> =
    dyn FnMut(&TreePids, &mut ImageWriter) -> Result<Vec<Attachment>, DumpError> + 'a;

/// [`checkpoint_to`], with `hook` run while the tree is frozen.
pub fn checkpoint_with(
    pid: i32,
    target: &ImageTarget,
    opts: &CheckpointOptions,
    hook: &mut FrozenHook,
) -> Result<CheckpointReport, DumpError> {
    let mut t = Timings::new();
    t.phase("cuda");
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(DumpError::NoSuchProcess { pid });
    }
    // Declared before the tree, so dropped after it: the driver gives a
    // process its GPU back only while the process runs.
    let gpu = cuda::GpuCheckpoint::suspend_tree(
        pid,
        opts.cuda_lock_timeout
            .unwrap_or(cuda_ckpt::DEFAULT_LOCK_TIMEOUT),
    )?;
    t.phase("freeze");
    let tree = FrozenTree::seize(pid)?;
    gpu.check_tree(&tree)?;

    let mut writer = ImageWriter::open(target, opts.image.clone())?;
    writer.set_progress(&format!("checkpoint pid {pid}"));
    let pids = TreePids {
        live: tree.procs.iter().map(|p| p.pid).collect(),
        zombies: tree.zombies.iter().map(|z| z.pid).collect(),
    };
    let dumped = hook(&pids, &mut writer).and_then(|attachments| {
        let mut manifest = dump_tree(&tree, &mut writer, &mut t, opts)?;
        manifest.attachments = attachments;
        Ok(manifest)
    });
    match dumped {
        Ok(mut manifest) => {
            gpu.record(&mut manifest);
            let vmas = manifest.processes.iter().map(|p| p.vmas.len()).sum();
            let fds = manifest.processes.iter().map(|p| p.fds.len()).sum();
            let processes = manifest.processes.len();
            let threads = manifest.processes.iter().map(|p| p.threads.len()).sum();
            let pages_bytes = writer.written();
            let stored = writer.stats();
            t.phase("write");
            let root = writer.finish(manifest)?;
            t.phase("finish");
            if opts.leave_running {
                tree.release()?;
                gpu.resume()?;
            } else {
                gpu.ended();
                tree.kill()?;
            }
            t.end();
            Ok(CheckpointReport {
                timings: t,
                processes,
                threads,
                vmas,
                pages_bytes,
                fds,
                stored,
                root,
            })
        }
        Err(e) => {
            writer.abandon();
            drop(tree);
            Err(e)
        }
    }
}

/// Dumps every process of the frozen tree. Everything that can be refused
/// (fds, pipes leaving the tree, mappings) is looked at for every process
/// before any memory is copied.
fn dump_tree(
    tree: &FrozenTree,
    writer: &mut ImageWriter,
    t: &mut Timings,
    opts: &CheckpointOptions,
) -> Result<Manifest, DumpError> {
    t.phase("files");
    let mut files = Vec::with_capacity(tree.procs.len());
    let root = tree.procs[0].pid;
    let inherit: Vec<(i32, i32)> = opts.inherit_fds.iter().map(|&fd| (root, fd)).collect();
    for frozen in &tree.procs {
        let pid = frozen.pid;
        let (f, fds) = fds::dump_fds(pid, writer, opts.tcp_close, &inherit)?;
        files.push(fds::ProcFiles { pid, files: f, fds });
    }
    fds::link_tree(&mut files)?;

    t.phase("mappings");
    for frozen in &tree.procs {
        let pid = frozen.pid;
        // Refuse unsupported mappings before anything is injected.
        for m in &read_maps(pid)? {
            memory::classify(m).map_err(|what| DumpError::UnsupportedProcess { pid, what })?;
        }
    }

    let mut processes = Vec::with_capacity(tree.procs.len());
    for (frozen, f) in tree.procs.iter().zip(files) {
        processes.push(dump_frozen(frozen, f, writer, t)?);
    }
    let mut manifest = Manifest {
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        snaprun_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel: process::kernel_release(),
        processes,
        zombies: tree.zombies.clone(),
        attachments: Vec::new(),
    };
    if opts.own_pid_ns {
        pidns::to_own_ids(&mut manifest)?;
    }
    Ok(manifest)
}

/// One frozen process's threads, memory and attributes, with its files
/// (dumped before, by [`dump_tree`]).
fn dump_frozen(
    frozen: &FrozenProcess,
    f: fds::ProcFiles,
    writer: &mut ImageWriter,
    t: &mut Timings,
) -> Result<ProcessImage, DumpError> {
    let pid = frozen.pid;
    t.phase("state");
    let maps = read_maps(pid)?;
    let vdso = maps
        .iter()
        .find(|m| m.name == "[vdso]")
        .map(|m| (m.start, m.end));
    let (injected, per_thread) = inject_reads(frozen, vdso)?;
    let threads = frozen
        .threads
        .iter()
        .zip(&per_thread)
        .map(|(f, inj)| threads::dump_thread(pid, f, inj))
        .collect::<Result<Vec<_>, _>>()?;
    let shared_pending =
        threads::pending(
            ptrace::peek_siginfo(pid, true).map_err(|source| DumpError::Ptrace {
                pid,
                what: "PEEKSIGINFO shared",
                source,
            })?,
        );

    t.phase("memory");
    // The maps are read again: injection mapped and unmapped a scratch page,
    // which may have split or merged neighbours.
    let maps = read_maps(pid)?;
    let mem = ProcMem::open(pid).map_err(|source| DumpError::Proc {
        pid,
        path: format!("/proc/{pid}/mem"),
        source,
    })?;
    let pagemap = Pagemap::open(pid).map_err(|source| DumpError::Proc {
        pid,
        path: format!("/proc/{pid}/pagemap"),
        source,
    })?;
    let mut vmas = Vec::with_capacity(maps.len());
    for m in &maps {
        let Some(kind) =
            memory::classify(m).map_err(|what| DumpError::UnsupportedProcess { pid, what })?
        else {
            continue;
        };
        vmas.push(memory::dump_vma(pid, m, kind, &mem, &pagemap, writer)?);
    }
    let memfds = fds::dump_memfds(pid, &f.files, &f.fds, &maps, writer)?;
    if !vmas.iter().any(|v| v.kind == VmaKind::Vdso) {
        tracing::warn!(pid, "process has no vDSO mapping");
    }

    t.phase("process");
    let mut proc_image = process::dump_process(pid, injected.brk, injected.securebits)?;
    proc_image.vmas = vmas;
    proc_image.threads = threads;
    proc_image.sigactions = injected.sigactions;
    proc_image.shared_pending = shared_pending;
    proc_image.files = f.files;
    proc_image.fds = f.fds;
    proc_image.memfds = memfds;
    Ok(proc_image)
}

/// `/proc/PID/smaps`, parsed.
fn read_maps(pid: i32) -> Result<Vec<crate::sys::proc::MapEntry>, DumpError> {
    let path = format!("/proc/{pid}/smaps");
    let text =
        std::fs::read_to_string(&path).map_err(|source| DumpError::Proc { pid, path, source })?;
    parse_smaps(&text).map_err(|reason| DumpError::State { pid, reason })
}

/// Runs the syscalls that read what only the process can tell, in the
/// leader for the process-wide state and in each thread for its own,
/// through a scratch page mapped for the purpose and unmapped after.
fn inject_reads(
    frozen: &FrozenProcess,
    vdso: Option<(u64, u64)>,
) -> Result<(threads::ProcessInjected, Vec<threads::ThreadInjected>), DumpError> {
    let leader = frozen.leader();
    let mut inj = injector(leader, vdso)?;
    let page = inj.syscall(
        "mmap(scratch)",
        libc::SYS_mmap,
        &[
            0,
            PAGE_SIZE,
            (libc::PROT_READ | libc::PROT_WRITE) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ],
    )?;
    let mut scratch = Scratch::new(page, PAGE_SIZE);
    let result = (|| -> Result<_, DumpError> {
        let process = threads::read_process(&mut inj, &mut scratch)?;
        let mut per_thread = Vec::with_capacity(frozen.threads.len());
        for t in &frozen.threads {
            let state = if t.pid == leader.pid {
                threads::read_thread(&mut inj, &mut scratch)?
            } else {
                let mut tinj = injector(t, vdso)?;
                let state = threads::read_thread(&mut tinj, &mut scratch);
                put_back(t)?;
                state?
            };
            per_thread.push(state);
        }
        Ok((process, per_thread))
    })();
    let unmapped = inj.syscall("munmap(scratch)", libc::SYS_munmap, &[page, PAGE_SIZE]);
    let state = result?;
    unmapped?;
    put_back(leader)?;
    Ok(state)
}

/// An injector into a frozen thread, with every signal blocked so that
/// none is delivered while it runs injected code.
fn injector(t: &Frozen, vdso: Option<(u64, u64)>) -> Result<Injector, DumpError> {
    let ip = t.find_syscall_insn(vdso)?;
    ptrace::set_sigmask(t.pid, !0).map_err(|source| DumpError::Ptrace {
        pid: t.pid,
        what: "SETSIGMASK",
        source,
    })?;
    Ok(Injector::new(t.pid, t.regs, ip, InjectMode::SyscallStops)?)
}

/// Back to the frozen registers and mask after injection (`Frozen` restores
/// them again when it lets the process go).
fn put_back(t: &Frozen) -> Result<(), DumpError> {
    let pid = t.pid;
    ptrace::set_regs(pid, &t.regs).map_err(|source| DumpError::Ptrace {
        pid,
        what: "SETREGS",
        source,
    })?;
    ptrace::set_sigmask(pid, t.sigmask).map_err(|source| DumpError::Ptrace {
        pid,
        what: "SETSIGMASK",
        source,
    })
}
