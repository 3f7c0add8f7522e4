//! The manifest: everything about a checkpointed process but its page
//! contents. See docs/snapshot-format.md; bump [`super::FORMAT_VERSION`] on
//! any change that an older reader would misread.

use serde::{Deserialize, Serialize};
use snaprun_store::ChunkRef;

use super::socket::{InetSocket, UnixSocket};
use crate::sys::Regs;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Seconds since the epoch when the checkpoint was taken.
    pub created_unix: u64,
    /// The snaprun release that wrote it (informative).
    pub snaprun_version: String,
    /// `uname -r` of the kernel it was taken on.
    pub kernel: String,
    /// The process tree: the checkpointed process first, every other one
    /// after its parent.
    pub processes: Vec<ProcessImage>,
    /// Children of the tree that had exited but were not reaped yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zombies: Vec<Zombie>,
    /// Data the engine's caller keeps with the snapshot (a container's
    /// description and tmpfs contents), opaque to the engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// A named piece of caller data stored with a snapshot: a JSON
/// description and, optionally, bytes in the store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Attachment {
    pub name: String,
    #[serde(default)]
    pub meta: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PageRun>,
}

/// A child that had exited and was not reaped by its parent yet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Zombie {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    /// As `waitpid` reports it (exit code << 8, or the signal).
    pub exit_status: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProcessImage {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub comm: String,
    pub exe: FileRef,
    pub creds: Creds,
    pub cwd: String,
    pub root: String,
    pub umask: u32,
    pub personality: u32,
    pub rlimits: Vec<Rlimit>,
    pub mm: MmFields,
    pub vmas: Vec<Vma>,
    /// Every thread, the thread-group leader (tid == pid) first.
    pub threads: Vec<ThreadImage>,
    pub sigactions: Vec<SigAction>,
    /// Signals pending for the whole process.
    pub shared_pending: Vec<PendingSignal>,
    pub files: Vec<OpenFile>,
    pub fds: Vec<Fd>,
    /// The memfds that fds or mappings refer to, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memfds: Vec<Memfd>,
    /// Set for a CUDA process whose GPU state the driver moved into its
    /// host memory before the dump (docs/gpu.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda: Option<CudaState>,
}

/// A CUDA process checkpointed through the driver: its GPU memory is in
/// the dumped host memory, and restore gives it back with
/// `cuCheckpointProcessRestore` + `cuCheckpointProcessUnlock`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CudaState {
    /// Always true today (a process whose GPU state is not checkpointed is
    /// refused); kept explicit for readers.
    pub checkpointed: bool,
    /// UUIDs of the GPUs it had open (`GPU-…`), the ones `--gpu-map`
    /// remaps; empty if it held none open (or was suspended already).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpus: Vec<String>,
    /// `cuDriverGetVersion` of the driver that checkpointed it.
    pub driver_api: i32,
    /// The kernel module's version, when known (`580.65.06`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// It was suspended already (`snaprun gpu suspend`) when checkpointed,
    /// so a `--leave-running` checkpoint left it suspended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub was_suspended: bool,
}

/// A memfd (`memfd_create`) with its content, referred to by inode from
/// `FileKind::Memfd` fds and `memfd`/`memfd_private` VMAs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Memfd {
    /// The inode at checkpoint.
    pub inode: u64,
    /// The name given to `memfd_create` (the link reads `/memfd:NAME`).
    pub name: String,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// `F_GET_SEALS` (`F_SEAL_SEAL` alone for a memfd made without
    /// `MFD_ALLOW_SEALING`).
    pub seals: u32,
    /// The pages that hold data, `vma_offset` being the offset in the file;
    /// the rest reads as zeros.
    pub runs: Vec<PageRun>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Creds {
    /// Real, effective, saved, filesystem.
    pub uid: [u32; 4],
    pub gid: [u32; 4],
    pub groups: Vec<u32>,
    /// Capability sets, securebits and no_new_privs; absent: left as the
    /// restorer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Caps>,
}

/// A thread's capability sets (bit N = capability N) and the flags that go
/// with them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Caps {
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
    /// `prctl(PR_GET_SECUREBITS)`.
    pub securebits: u32,
    pub no_new_privs: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rlimit {
    pub resource: u32,
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    /// The saved auxiliary vector as (type, value) words, AT_NULL last.
    pub auxv: Vec<u64>,
}

/// A file as seen at checkpoint, so that restore can tell if it changed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRef {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum VmaKind {
    /// Private anonymous memory (including `[anon:NAME]`).
    Anon,
    Heap,
    Stack,
    /// A private mapping of a file: pages copied on write are dumped, the
    /// others come from the file.
    FilePrivate,
    /// A shared mapping of a file: nothing dumped, the file holds it.
    FileShared,
    /// Shared anonymous memory (`/dev/zero (deleted)`): dumped whole.
    SharedAnon,
    /// A shared mapping of a memfd (`shmem_inode` names it): nothing
    /// dumped, the memfd's content is in `ProcessImage::memfds`.
    Memfd,
    /// A private mapping of a memfd: pages copied on write are dumped, the
    /// others come from the memfd.
    MemfdPrivate,
    Vdso,
    Vvar,
    VvarVclock,
}

impl VmaKind {
    /// Mappings the kernel places (moved with the vDSO), not mapped by us.
    pub fn is_special(self) -> bool {
        matches!(self, Self::Vdso | Self::Vvar | Self::VvarVclock)
    }
}

/// Per-mapping attributes from `VmFlags`, re-applied with madvise/mlock.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmaAdvice {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub growsdown: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hugepage: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nohugepage: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dontfork: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dontdump: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wipeonfork: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noreserve: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mergeable: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    /// `PROT_*` bits.
    pub prot: u32,
    pub kind: VmaKind,
    /// The backing file of a file mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileRef>,
    /// Offset into the file, in bytes.
    #[serde(default)]
    pub offset: u64,
    /// The name after the address range in `/proc/PID/maps` (informative).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub advice: VmaAdvice,
    /// For shared anonymous memory and memfd mappings: the object's inode
    /// at checkpoint. VMAs with the same one map one object and are
    /// restored as one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shmem_inode: u64,
    /// The dumped pages, in address order.
    pub runs: Vec<PageRun>,
}

impl Vma {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn dumped_bytes(&self) -> u64 {
        self.runs.iter().map(|r| r.len).sum()
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A run of pages of one VMA (or a file's content), stored as chunks in
/// the snapshot store.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PageRun {
    /// Offset of the first page from the VMA's start, in bytes.
    pub vma_offset: u64,
    /// Length in bytes (a multiple of the page size for memory).
    pub len: u64,
    /// The chunks covering the run, in order; their lengths add up to
    /// `len`. A chunk without a digest is all zeros and is not stored.
    pub chunks: Vec<ChunkRef>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ThreadImage {
    pub tid: i32,
    /// The thread's name (`/proc/PID/task/TID/comm`).
    #[serde(default)]
    pub comm: String,
    pub regs: Regs,
    /// The XSAVE area (`NT_X86_XSTATE`), hex.
    pub xsave: String,
    pub sigmask: u64,
    /// Signals pending for this thread only.
    pub pending: Vec<PendingSignal>,
    pub altstack: AltStack,
    pub clear_tid_address: u64,
    pub robust_list: RobustList,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rseq: Option<Rseq>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: i32,
    pub size: u64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RobustList {
    pub head: u64,
    pub len: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rseq {
    pub address: u64,
    pub len: u32,
    pub signature: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingSignal {
    pub signo: i32,
    /// The raw `siginfo_t` (128 bytes), hex.
    pub siginfo: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SigAction {
    pub signo: i32,
    /// `SIG_DFL` (0), `SIG_IGN` (1) or the handler's address.
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// An open file description; several fds may share one (dup).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenFile {
    pub id: u32,
    /// `f_flags` without `O_CLOEXEC` (that one is per fd).
    pub flags: u32,
    pub kind: FileKind,
    /// Set when the description is shared with an earlier process of the
    /// tree (inherited across fork): restore takes that process's one
    /// instead of making another, and `kind` is informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedFile>,
}

/// Where a shared open file description lives: fd `fd` of process `pid`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SharedFile {
    pub pid: i32,
    pub fd: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FileKind {
    Regular {
        file: FileRef,
        pos: u64,
    },
    Directory {
        path: String,
        pos: u64,
    },
    CharDevice {
        path: String,
        major: u32,
        minor: u32,
    },
    /// A named FIFO.
    Fifo {
        path: String,
        /// `F_GETPIPE_SZ`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capacity: Option<u32>,
        /// Bytes buffered in it, on the first description of the FIFO
        /// only, stored like pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<PageRun>,
    },
    /// One end of a pipe whose both ends are in the process.
    Pipe {
        /// The pipe's inode: both ends share it.
        inode: u64,
        write_end: bool,
        capacity: u32,
        /// Buffered bytes (on the read end's entry), stored like pages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<PageRun>,
    },
    /// A regular file that was open but deleted (a "ghost" file): its whole
    /// content is in the image; restore recreates it, opens it and unlinks
    /// it again.
    Deleted {
        /// The original path, without the " (deleted)" suffix.
        path: String,
        /// Permission bits (`st_mode & 0o7777`).
        mode: u32,
        size: u64,
        pos: u64,
        /// The file's whole content, stored like pages; `None` when empty.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<PageRun>,
    },
    /// An eventfd with its counter.
    EventFd {
        count: u64,
        semaphore: bool,
    },
    /// A TCP or UDP socket (see [`super::socket`]).
    InetSocket(InetSocket),
    /// One unix socket (see [`super::socket`]).
    UnixSocket(UnixSocket),
    /// A timerfd with its setting (docs/engine.md says how the time left
    /// is kept).
    TimerFd {
        clockid: i32,
        /// fdinfo `settime flags`: `TFD_TIMER_ABSTIME` (1),
        /// `TFD_TIMER_CANCEL_ON_SET` (2).
        settime_flags: u32,
        /// Time left to the next expiration, ns: 0 when disarmed, or
        /// expired and waiting to be read.
        value_ns: u64,
        interval_ns: u64,
        /// Expirations not read yet.
        ticks: u64,
        /// For an absolute (`TFD_TIMER_ABSTIME`) timer: when it expires,
        /// on its clock, ns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ns: Option<u64>,
    },
    /// An open memfd; its content is in `ProcessImage::memfds`.
    Memfd {
        inode: u64,
        pos: u64,
    },
    /// An inotify instance and its watches (events queued at checkpoint
    /// are not kept).
    Inotify {
        watches: Vec<InotifyWatch>,
    },
    /// Not saved: the restorer hands over a description in its place
    /// (`CheckpointOptions::inherit_fds`, a container's stdio). `fd` is the
    /// root process's fd that had this description at checkpoint.
    Inherited {
        fd: i32,
    },
    /// A signalfd with the signals it accepts (bit `n - 1` for signal `n`).
    SignalFd {
        mask: u64,
    },
    /// An epoll instance and what is registered in it.
    Epoll {
        targets: Vec<EpollTarget>,
    },
}

/// One watch of an inotify instance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InotifyWatch {
    /// The watch descriptor the program knows it by.
    pub wd: i32,
    /// The watched file, found from its file handle at checkpoint.
    pub path: String,
    /// The mask, with its flags (`IN_ONESHOT`, `IN_EXCL_UNLINK`, ...).
    pub mask: u32,
}

/// One registration of an epoll instance.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EpollTarget {
    /// The fd number it was registered with (`epoll_ctl`'s `fd`).
    pub fd: i32,
    /// The open file registered (`OpenFile::id`); `fd` may since have been
    /// closed or now name another file.
    pub file: u32,
    /// `epoll_event.events`, with EPOLLET, EPOLLONESHOT, EPOLLWAKEUP and
    /// EPOLLEXCLUSIVE; a fired one-shot registration keeps only those.
    pub events: u32,
    pub data: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fd {
    pub fd: i32,
    pub file: u32,
    pub cloexec: bool,
}

impl FileKind {
    /// A short description for humans (`inspect`, errors).
    pub fn describe(&self) -> String {
        match self {
            FileKind::Regular { file, pos } => format!("file {} @{pos}", file.path),
            FileKind::Directory { path, .. } => format!("dir {path}"),
            FileKind::CharDevice { path, major, minor } => format!("chr {path} ({major}:{minor})"),
            FileKind::Fifo { path, data, .. } => format!(
                "fifo {path}{}",
                data.as_ref()
                    .map(|d| format!(" ({} bytes buffered)", d.len))
                    .unwrap_or_default()
            ),
            FileKind::Pipe {
                inode,
                write_end,
                data,
                ..
            } => format!(
                "pipe:[{inode}] {}{}",
                if *write_end { "write" } else { "read" },
                data.as_ref()
                    .map(|d| format!(" ({} bytes buffered)", d.len))
                    .unwrap_or_default()
            ),
            FileKind::Deleted {
                path, size, pos, ..
            } => format!("deleted file {path} ({size} bytes) @{pos}"),
            FileKind::EventFd { count, semaphore } => format!(
                "eventfd count {count}{}",
                if *semaphore { " (semaphore)" } else { "" }
            ),
            FileKind::InetSocket(s) => s.describe(),
            FileKind::UnixSocket(s) => s.describe(),
            FileKind::TimerFd {
                clockid,
                value_ns,
                interval_ns,
                ticks,
                deadline_ns,
                ..
            } => format!(
                "timerfd clock {clockid} {} {value_ns} ns, interval {interval_ns} ns, {ticks} ticks",
                if deadline_ns.is_some() {
                    "absolute, left"
                } else {
                    "left"
                }
            ),
            FileKind::Memfd { inode, pos } => format!("memfd inode {inode} @{pos}"),
            FileKind::Inotify { watches } => format!(
                "inotify watching {:?}",
                watches
                    .iter()
                    .map(|w| format!("{}:{}", w.wd, w.path))
                    .collect::<Vec<_>>()
            ),
            FileKind::SignalFd { mask } => format!("signalfd mask {mask:#x}"),
            FileKind::Inherited { fd } => format!("inherited (the root's fd {fd})"),
            FileKind::Epoll { targets } => format!(
                "epoll watching fds {:?}",
                targets.iter().map(|t| t.fd).collect::<Vec<_>>()
            ),
        }
    }
}
