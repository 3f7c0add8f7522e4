//! The restore's side of a lazy restore: start the pager, hand it each
//! process's uffd, wait for its working set, tell it the tree runs.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::protocol::{Attach, AttachRange, Channel, FromPager, Source, Start, ToPager};
use super::uffd::{Uffd, PAGER_FEATURES};
use super::{image_root, PagerError};
use crate::image::{Image, ProcessImage, Vma, VmaKind};
use crate::sys::remote::Remote;
use snaprun_store::Digest;

/// The fd the pager finds its control channel at.
pub const CONTROL_FD: i32 = 3;
/// How long a restore waits for the pager's working set before it gives
/// up (the pager's own read timeout fails it much earlier if the store
/// does not answer).
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// How a lazy restore runs its pager.
#[derive(Clone, Debug)]
pub struct LazyOptions {
    /// What the restore opened, for the pager to open again.
    pub source: Source,
    /// The `snaprun` binary, run as `snaprun pager`.
    pub exe: PathBuf,
    /// The pager's log (its stderr).
    pub log: PathBuf,
    /// Where the pager writes its figures (JSON).
    pub stats: Option<PathBuf>,
    /// Push the saved working set before the resume and record a new one.
    pub working_set: bool,
    /// How long the recording window stays open after the resume.
    pub window: Duration,
    /// Threads that push and stream (0: one per core, at most 4).
    pub stream_threads: usize,
    /// A chunk read that takes longer kills the process.
    pub read_timeout: Duration,
}

impl LazyOptions {
    pub fn new(source: Source, exe: PathBuf, log: PathBuf) -> Self {
        Self {
            source,
            exe,
            log,
            stats: None,
            working_set: true,
            window: Duration::from_secs(2),
            stream_threads: 0,
            read_timeout: Duration::from_secs(4),
        }
    }
}

/// A mapping whose pages the pager serves: private anonymous memory with
/// stored pages and not locked (`mlock` would fault it all in at once).
/// File-backed private mappings (MISSING mode does not apply to their
/// file pages), shared anonymous memory and memfds are filled eagerly.
pub fn is_lazy(v: &Vma) -> bool {
    matches!(v.kind, VmaKind::Anon | VmaKind::Heap | VmaKind::Stack)
        && !v.runs.is_empty()
        && !v.advice.locked
}

/// The mappings of `vmas` a lazy restore fills eagerly.
pub fn eager_vmas(vmas: &[Vma]) -> Vec<Vma> {
    vmas.iter().filter(|v| !is_lazy(v)).cloned().collect()
}

/// Where the pager runs and logs, and what it did before the resume, for
/// the restore's report.
#[derive(Clone, Debug)]
pub struct PagerInfo {
    pub pid: u32,
    pub log: PathBuf,
    /// Stored bytes it serves.
    pub lazy_bytes: u64,
    /// Working-set chunks (and their bytes) pushed before the resume.
    pub pushed_chunks: u64,
    pub pushed_bytes: u64,
}

/// The running pager of one restore.
#[derive(Debug)]
pub struct PagerClient {
    chan: Channel,
    pid: u32,
    log: PathBuf,
    waiting: Vec<usize>,
    lazy_bytes: u64,
    pushed: (u64, u64),
}

fn control_err(what: &str) -> impl FnOnce(std::io::Error) -> PagerError + '_ {
    move |source| PagerError::Control {
        what: what.to_string(),
        source,
    }
}

/// A pager being started on a thread ([`PagerClient::spawn_in_background`]).
#[derive(Debug)]
pub struct StartingPager {
    handle: Option<std::thread::JoinHandle<Result<PagerClient, PagerError>>>,
    client: Option<PagerClient>,
    exe: PathBuf,
}

impl StartingPager {
    /// The started pager (waiting for the start if it is still under way).
    pub fn get(&mut self) -> Result<&mut PagerClient, PagerError> {
        if let Some(handle) = self.handle.take() {
            let client = handle.join().map_err(|_| PagerError::Spawn {
                exe: self.exe.clone(),
                source: std::io::Error::other("the thread starting it panicked"),
            })??;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("joined above"))
    }

    pub fn into_client(mut self) -> Result<PagerClient, PagerError> {
        self.get()?;
        Ok(self.client.take().expect("joined by get"))
    }
}

impl PagerClient {
    /// Starts `snaprun pager` (detached: its own session, its stderr the
    /// log file, the control channel at fd 3 and no other fd) and sends it
    /// what to serve.
    pub fn spawn(image: &Image, opts: &LazyOptions) -> Result<Self, PagerError> {
        Self::spawn_for(image_root(image)?, opts)
    }

    /// As [`PagerClient::spawn`], on a thread of its own: the fork and exec
    /// (about 10 ms) then overlap the restore's first phases, which do not
    /// need the pager until the memory is registered.
    pub fn spawn_in_background(
        image: &Image,
        opts: &LazyOptions,
    ) -> Result<StartingPager, PagerError> {
        let root = image_root(image)?;
        let opts = opts.clone();
        let exe = opts.exe.clone();
        let handle = std::thread::Builder::new()
            .name("pager-spawn".into())
            .spawn(move || Self::spawn_for(root, &opts))
            .map_err(|source| PagerError::Spawn {
                exe: exe.clone(),
                source,
            })?;
        Ok(StartingPager {
            handle: Some(handle),
            client: None,
            exe,
        })
    }

    fn spawn_for(root: Digest, opts: &LazyOptions) -> Result<Self, PagerError> {
        if let Some(dir) = opts.log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&opts.log)
            .map_err(|source| PagerError::Spawn {
                exe: opts.log.clone(),
                source,
            })?;
        let (mine, theirs) = Channel::pair().map_err(control_err("socketpair"))?;
        let theirs_fd = theirs.fd().as_raw_fd();
        let mut cmd = Command::new(&opts.exe);
        cmd.arg("pager")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        // SAFETY: runs in the child between fork and exec and calls only
        // async-signal-safe functions (setsid, dup2, fcntl, close_range)
        // on integers.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if theirs_fd == CONTROL_FD {
                    libc::fcntl(CONTROL_FD, libc::F_SETFD, 0);
                } else if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::syscall(libc::SYS_close_range, CONTROL_FD + 1, u32::MAX, 0u32);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| PagerError::Spawn {
            exe: opts.exe.clone(),
            source,
        })?;
        drop(theirs);
        let start = Start {
            source: opts.source.clone(),
            root: root.to_string(),
            working_set: opts.working_set,
            window_ms: opts.window.as_millis() as u64,
            stream_threads: opts.stream_threads,
            read_timeout_ms: opts.read_timeout.as_millis() as u64,
            stats: opts.stats.clone(),
        };
        mine.send(&ToPager::Start(start), &[])
            .map_err(control_err("sending the start"))?;
        Ok(Self {
            chan: mine,
            pid: child.id(),
            log: opts.log.clone(),
            waiting: Vec::new(),
            lazy_bytes: 0,
            pushed: (0, 0),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Creates a uffd in the target (`remote`, process `index` of the
    /// manifest), registers its lazily served mappings, and hands the uffd
    /// to the pager, which serves faults from then on (the rest of the
    /// restore's own kernel accesses included). Call after the mappings are
    /// made and before anything touches them.
    pub fn attach(
        &mut self,
        remote: &mut dyn Remote,
        index: usize,
        p: &ProcessImage,
    ) -> Result<(), PagerError> {
        let pid = remote.pid();
        let lazy: Vec<&Vma> = p.vmas.iter().filter(|v| is_lazy(v)).collect();
        if lazy.is_empty() {
            return Ok(());
        }
        let uerr = |what: &str| {
            let what = what.to_string();
            move |source| PagerError::Uffd { pid, what, source }
        };
        // Not UFFD_USER_MODE_ONLY: the kernel's own accesses (a read()
        // into a missing page, the restore's injected calls) fault too.
        let fd = remote.syscall(
            "userfaultfd(O_CLOEXEC|O_NONBLOCK)",
            libc::SYS_userfaultfd,
            &[(libc::O_CLOEXEC | libc::O_NONBLOCK) as u64],
        )?;
        let pidfd = pidfd_open(pid).map_err(uerr("pidfd_open"))?;
        let taken = pidfd_getfd(&pidfd, fd as i32).map_err(uerr("pidfd_getfd"));
        remote.syscall("close(userfaultfd)", libc::SYS_close, &[fd])?;
        let uffd = Uffd::new(taken?);
        uffd.api(PAGER_FEATURES).map_err(uerr("UFFDIO_API"))?;
        let mut ranges = Vec::with_capacity(lazy.len());
        for v in &lazy {
            uffd.register_missing(v.start, v.len())
                .map_err(uerr(&format!("UFFDIO_REGISTER {:x}-{:x}", v.start, v.end)))?;
            ranges.push(AttachRange {
                start: v.start,
                end: v.end,
                wipeonfork: v.advice.wipeonfork,
                dontfork: v.advice.dontfork,
            });
            self.lazy_bytes += v.runs.iter().map(|r| r.len).sum::<u64>();
        }
        let msg = ToPager::Attach(Attach { index, pid, ranges });
        self.chan
            .send(&msg, &[uffd.fd().as_fd(), pidfd.as_fd()])
            .map_err(control_err("sending a uffd"))?;
        self.waiting.push(index);
        tracing::debug!(pid, index, vmas = lazy.len(), "lazy mappings registered");
        Ok(())
    }

    /// Waits until the pager has pushed the working set of every attached
    /// process.
    pub fn wait_ready(&mut self) -> Result<(), PagerError> {
        self.chan
            .set_recv_timeout(Some(READY_TIMEOUT))
            .map_err(control_err("SO_RCVTIMEO"))?;
        while !self.waiting.is_empty() {
            let got = self
                .chan
                .recv::<FromPager>()
                .map_err(|e| PagerError::Failed {
                    reason: format!("no word from the pager: {e}"),
                    log: self.log.display().to_string(),
                })?;
            match got {
                Some((
                    FromPager::Ready {
                        index,
                        pushed_chunks,
                        pushed_bytes,
                    },
                    _,
                )) => {
                    self.waiting.retain(|&i| i != index);
                    self.pushed.0 += pushed_chunks as u64;
                    self.pushed.1 += pushed_bytes;
                }
                Some((FromPager::Failed { reason }, _)) => {
                    return Err(PagerError::Failed {
                        reason,
                        log: self.log.display().to_string(),
                    })
                }
                None => {
                    return Err(PagerError::Failed {
                        reason: "the pager exited".into(),
                        log: self.log.display().to_string(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Tells the pager the processes are about to run (told before, so
    /// that it never takes the restore's exit for a failure once they
    /// run; if the resume fails, the processes are killed and the pager
    /// sees them exit). From here on it is on its own.
    pub fn resuming(self) -> Result<PagerInfo, PagerError> {
        self.chan
            .send(&ToPager::Resumed, &[])
            .map_err(control_err("sending resumed"))?;
        Ok(PagerInfo {
            pid: self.pid,
            log: self.log,
            lazy_bytes: self.lazy_bytes,
            pushed_chunks: self.pushed.0,
            pushed_bytes: self.pushed.1,
        })
    }
}

fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes integers and returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes integers and returns a new fd we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{PageRun, VmaAdvice};

    fn vma(kind: VmaKind, runs: usize, locked: bool) -> Vma {
        Vma {
            start: 0x10000,
            end: 0x20000,
            prot: 3,
            kind,
            file: None,
            offset: 0,
            name: String::new(),
            advice: VmaAdvice {
                locked,
                ..Default::default()
            },
            shmem_inode: 0,
            runs: (0..runs)
                .map(|_| PageRun {
                    vma_offset: 0,
                    len: 0x1000,
                    chunks: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn only_unlocked_private_anonymous_memory_with_data_is_lazy() {
        assert!(is_lazy(&vma(VmaKind::Anon, 1, false)));
        assert!(is_lazy(&vma(VmaKind::Heap, 1, false)));
        assert!(is_lazy(&vma(VmaKind::Stack, 1, false)));
        assert!(!is_lazy(&vma(VmaKind::Anon, 0, false)), "nothing to serve");
        assert!(
            !is_lazy(&vma(VmaKind::Anon, 1, true)),
            "mlock faults it all"
        );
        for k in [
            VmaKind::FilePrivate,
            VmaKind::SharedAnon,
            VmaKind::MemfdPrivate,
        ] {
            assert!(!is_lazy(&vma(k, 1, false)), "{k:?}");
        }
        let all = [
            vma(VmaKind::Anon, 1, false),
            vma(VmaKind::FilePrivate, 1, false),
        ];
        let eager = eager_vmas(&all);
        assert_eq!(eager.len(), 1);
        assert_eq!(eager[0].kind, VmaKind::FilePrivate);
    }
}
