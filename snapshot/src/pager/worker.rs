//! The pager's shared state and its helper threads: the workers that push
//! the working set and stream the rest, the watchdog that fails a chunk
//! read that hangs, and the failure path (kill what is served, say why).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use snaprun_store::Digest;

use super::fill::{fill_range, Outcome};
use super::map::{ChunkTable, PageMap, Piece};
use super::protocol::{Channel, FromPager};
use super::stats::{Counters, Stats};
use super::uffd::Uffd;
use crate::image::Image;

/// One served memory (mm): a process of the tree, or a child one forked.
pub struct Ctx {
    /// Its place in the manifest; `None` for a forked child.
    pub index: Option<usize>,
    /// Its pid as the snapshot has it (a child: its root's).
    pub snap_pid: i32,
    /// "pid N", or "a child of pid N".
    pub label: String,
    /// The process (a root of the restore) or, for a child, its parent's
    /// root: failures kill it and its descendants.
    pub pid: i32,
    pub uffd: Uffd,
    /// The process's pidfd (roots only): readable once it exits.
    pub pidfd: Option<OwnedFd>,
    pub table: Arc<ChunkTable>,
    pub map: Mutex<PageMap>,
    /// Held shared by every fill, exclusive while the uffd is read and its
    /// events applied: a fill never lands after an event that changed the
    /// map it was decided on (see docs/pager.md).
    pub gate: RwLock<()>,
    pub dead: AtomicBool,
    /// Working-set chunks still to push before the restore may resume it.
    pub ws_left: AtomicUsize,
    pub ready_sent: AtomicBool,
    pub pushed_chunks: AtomicU64,
    pub pushed_bytes: AtomicU64,
}

impl Ctx {
    pub fn lock_map(&self) -> std::sync::MutexGuard<'_, PageMap> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn finished(&self) -> bool {
        self.dead.load(Ordering::Relaxed) || self.lock_map().is_empty()
    }
}

/// Work for the workers.
#[derive(Default)]
pub struct Work {
    /// Working-set chunks to push: (memory, chunk index).
    pub push: VecDeque<(Arc<Ctx>, usize)>,
    pub streaming: bool,
    pub stop: bool,
}

pub struct Shared {
    pub image: Image,
    pub ctxs: RwLock<Vec<Arc<Ctx>>>,
    pub work: Mutex<Work>,
    pub work_cv: Condvar,
    /// Faults being served: workers hold back while it is not zero.
    pub faults_busy: AtomicUsize,
    /// An eventfd that wakes the main loop (a working set pushed, streaming
    /// done).
    pub wake: OwnedFd,
    reads: Mutex<HashMap<u64, (Instant, Digest)>>,
    read_seq: AtomicU64,
    pub read_timeout: Duration,
    pub counters: Counters,
    /// The figures other than the counters, written on failure too.
    pub stats: Mutex<Stats>,
    pub stats_path: Option<PathBuf>,
    pub control: Mutex<Option<Arc<Channel>>>,
    failing: AtomicBool,
}

/// How long a worker waits before it tries a fill the kernel refused with
/// EAGAIN again (an event is being read meanwhile).
const AGAIN_PAUSE: Duration = Duration::from_micros(500);

impl Shared {
    pub fn new(
        image: Image,
        wake: OwnedFd,
        read_timeout: Duration,
        stats_path: Option<PathBuf>,
    ) -> Self {
        Self {
            image,
            ctxs: RwLock::new(Vec::new()),
            work: Mutex::new(Work::default()),
            work_cv: Condvar::new(),
            faults_busy: AtomicUsize::new(0),
            wake,
            reads: Mutex::new(HashMap::new()),
            read_seq: AtomicU64::new(0),
            read_timeout,
            counters: Counters::default(),
            stats: Mutex::new(Stats::default()),
            stats_path,
            control: Mutex::new(None),
            failing: AtomicBool::new(false),
        }
    }

    pub fn lock_work(&self) -> std::sync::MutexGuard<'_, Work> {
        self.work.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn ctx_list(&self) -> Vec<Arc<Ctx>> {
        self.ctxs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Wakes the main loop.
    pub fn wake_main(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                (&one as *const u64).cast(),
                size_of::<u64>(),
            )
        };
    }

    /// Reads a chunk, verified, under the watchdog's eye. The error names
    /// the chunk (and each tier's reason).
    pub fn read_chunk(&self, table: &ChunkTable, chunk: usize) -> Result<Vec<u8>, String> {
        let info = &table.chunks[chunk];
        let id = self.read_seq.fetch_add(1, Ordering::Relaxed);
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (Instant::now(), info.digest));
        let r = self
            .image
            .store()
            .read_chunk(&info.chunk_ref(), &self.image.label);
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        match r {
            Ok(d) if d.len() as u64 == info.len => Ok(d),
            Ok(d) => Err(format!(
                "chunk {}: read {} bytes, the snapshot says {}",
                info.digest,
                d.len(),
                info.len
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The oldest chunk read still running past the timeout.
    fn overdue_read(&self) -> Option<(Digest, Duration)> {
        let reads = self.reads.lock().unwrap_or_else(|e| e.into_inner());
        reads
            .values()
            .map(|(t, d)| (*d, t.elapsed()))
            .filter(|(_, age)| *age > self.read_timeout)
            .max_by_key(|(_, age)| *age)
    }

    /// Copies a piece of a chunk into its memory (`data` is the whole
    /// chunk); `None` when the piece changed meanwhile (nothing done).
    /// Failures other than a refused (EAGAIN) or vanished target are fatal.
    pub fn fill_piece(&self, ctx: &Ctx, start: u64, piece: &Piece, data: &[u8]) -> Option<Outcome> {
        let _g = ctx.gate.read().unwrap_or_else(|e| e.into_inner());
        if ctx.dead.load(Ordering::Relaxed) || !ctx.lock_map().holds(start, piece) {
            return None;
        }
        let src = &data[piece.off as usize..(piece.off + piece.len) as usize];
        let out = fill_range(&ctx.uffd, start, src);
        match &out {
            Outcome::Done | Outcome::Exists { .. } | Outcome::Partial { .. } => {
                ctx.lock_map().done(start, piece);
            }
            Outcome::Gone => {
                // The process exited or exec'd: nothing more goes there.
                ctx.dead.store(true, Ordering::Relaxed);
            }
            Outcome::Unmapped => {
                ctx.lock_map().done(start, piece);
            }
            Outcome::Again { .. } => ctx.lock_map().unclaim(start, piece),
            Outcome::Failed(e) => self.fail(format!(
                "{}: UFFDIO_COPY at {start:#x}+{:#x}: {e}",
                ctx.label, piece.len
            )),
        }
        Some(out)
    }

    /// True once [`Shared::fail`] runs: the main loop then stands still
    /// (ending normally would race the failure's report and exit code).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Ends the pager because a page cannot be delivered: kills every
    /// process it serves (and their descendants) so that none waits for a
    /// page forever or runs on without it, waits for them to die (so no
    /// fault is retried on released memory), tells the restore if it still
    /// listens, writes the figures, and exits.
    pub fn fail(&self, reason: String) -> ! {
        if self.failing.swap(true, Ordering::SeqCst) {
            // Another thread is failing already; it exits the process.
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let ctxs = self.ctx_list();
        let roots: Vec<&Arc<Ctx>> = ctxs.iter().filter(|c| c.pidfd.is_some()).collect();
        let pids: Vec<i32> = roots.iter().map(|c| c.pid).collect();
        tracing::error!(?pids, reason = %reason, "cannot deliver a page: killing the processes");
        let mut victims = Vec::new();
        for c in &roots {
            victims.extend(crate::pager::serve::descendants(c.pid));
        }
        for c in &roots {
            if let Some(pfd) = &c.pidfd {
                // SAFETY: pidfd_send_signal on a pidfd we own; no memory.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        pfd.as_raw_fd(),
                        libc::SIGKILL,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
            }
        }
        for &pid in &victims {
            // SAFETY: kill(2) with integers on a descendant of a process
            // this pager serves.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for pid in pids.iter().chain(&victims) {
            while crate::pager::serve::is_alive(*pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(chan) = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = chan.send(
                &FromPager::Failed {
                    reason: reason.clone(),
                },
                &[],
            );
        }
        if let Some(path) = &self.stats_path {
            let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
            s.take_counters(&self.counters);
            s.error = Some(reason);
            s.write(path);
        }
        std::process::exit(1);
    }
}

/// Spawns the watchdog: a chunk read that runs past the timeout fails the
/// pager (a store that hangs must not hang the process).
pub fn spawn_watchdog(shared: Arc<Shared>) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some((digest, age)) = shared.overdue_read() {
            shared.fail(format!(
                "snapshot {}: chunk {digest}: no data after {:.1} s (the store does not answer)",
                shared.image.label,
                age.as_secs_f64()
            ));
        }
    });
}

enum Job {
    /// Push a working-set chunk.
    Push(Arc<Ctx>, usize),
    /// Stream a claimed piece.
    Stream(Arc<Ctx>, u64, Piece),
}

fn next_job(shared: &Shared) -> Option<Job> {
    let mut w = shared.lock_work();
    loop {
        if w.stop {
            return None;
        }
        if let Some((ctx, chunk)) = w.push.pop_front() {
            return Some(Job::Push(ctx, chunk));
        }
        if w.streaming {
            for ctx in shared.ctx_list() {
                if ctx.dead.load(Ordering::Relaxed) {
                    continue;
                }
                let claimed = ctx.lock_map().claim_next();
                if let Some((start, piece)) = claimed {
                    return Some(Job::Stream(ctx, start, piece));
                }
            }
        }
        // Nothing now: pieces given back after an EAGAIN, a fork's new
        // memory or the start of streaming wake us, or the timeout does.
        w = shared
            .work_cv
            .wait_timeout(w, Duration::from_millis(20))
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Holds a worker back while faults are being served: they come first.
fn yield_to_faults(shared: &Shared) {
    let until = Instant::now() + Duration::from_millis(50);
    while shared.faults_busy.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// A worker: pushes working-set chunks first, then (once streaming is on)
/// copies every pending piece of every memory.
pub fn worker(shared: Arc<Shared>) {
    // Workers keep the normal priority: one starved while it holds a
    // memory's gate (SCHED_IDLE on a busy machine) would stall the fault
    // thread, which takes the gate exclusive to read the uffd.
    while let Some(job) = next_job(&shared) {
        yield_to_faults(&shared);
        match job {
            Job::Push(ctx, chunk) => {
                push_one(&shared, &ctx, chunk);
                if ctx.ws_left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    shared.wake_main();
                }
            }
            Job::Stream(ctx, start, piece) => {
                let data = match shared.read_chunk(&ctx.table, piece.chunk) {
                    Ok(d) => d,
                    Err(reason) => shared.fail(reason),
                };
                match shared.fill_piece(&ctx, start, &piece, &data) {
                    Some(Outcome::Again { .. }) => std::thread::sleep(AGAIN_PAUSE),
                    Some(Outcome::Done) => {
                        Counters::add(&shared.counters.streamed_chunks, 1);
                        Counters::add(&shared.counters.streamed_bytes, piece.len);
                    }
                    _ => {}
                }
                if ctx.finished() {
                    shared.wake_main();
                }
            }
        }
    }
}

/// Pushes one working-set chunk (if still pending), retrying while the
/// kernel says the memory is changing.
fn push_one(shared: &Shared, ctx: &Ctx, chunk: usize) {
    let hint = ctx.table.chunks[chunk].addr;
    let mut data: Option<Vec<u8>> = None;
    for _ in 0..10_000 {
        let claimed = {
            let mut m = ctx.lock_map();
            match m.piece_of_chunk(chunk, hint) {
                Some((start, piece)) if m.claim(start) => Some((start, piece)),
                _ => None,
            }
        };
        let Some((start, piece)) = claimed else {
            return;
        };
        if data.is_none() {
            match shared.read_chunk(&ctx.table, chunk) {
                Ok(d) => data = Some(d),
                Err(reason) => shared.fail(reason),
            }
        }
        let bytes = data.as_deref().expect("read above");
        match shared.fill_piece(ctx, start, &piece, bytes) {
            Some(Outcome::Again { .. }) => std::thread::sleep(AGAIN_PAUSE),
            Some(Outcome::Done) => {
                Counters::add(&shared.counters.pushed_chunks, 1);
                Counters::add(&shared.counters.pushed_bytes, piece.len);
                Counters::add(&ctx.pushed_chunks, 1);
                Counters::add(&ctx.pushed_bytes, piece.len);
                return;
            }
            _ => return,
        }
    }
}
