//! `snaprun pager`: the pager process. One thread polls the control
//! channel, every uffd and pidfd, and a signalfd; it applies events and
//! serves faults itself (faults come first), while workers
//! ([`super::worker`]) push the working set and stream the rest.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use snaprun_store::lock::StoreLock;
use snaprun_store::{Digest, RefName, Store, StoreError, StoreOptions};

use super::fill::{zero_range, Fill, Outcome};
use super::map::{ChunkTable, PageMap, Range};
use super::protocol::{Attach, Channel, FromPager, Source, Start, ToPager};
use super::stats::{Counters, Window};
use super::uffd::{Event, Uffd};
use super::worker::{spawn_watchdog, worker, Ctx, Shared};
use super::workingset::{Recorder, WorkingSet};
use super::{image_root, PagerError};
use crate::image::{Image, DIR_REF};
use crate::sys::PAGE_SIZE;

/// Zeros for a fault no stored chunk covers are mapped this many bytes at
/// a time (the chunk size): one fault, not one per page.
const ZERO_WINDOW: u64 = 256 << 10;
/// Most uffd messages read in one go before faults are served.
const MSG_BATCH: usize = 64;

/// True while `pid` exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 1..].trim_start().chars().next())
            .is_some_and(|c| c != 'Z' && c != 'X'),
        Err(_) => false,
    }
}

/// Every descendant of `pid` now (children, their children...).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
                .and_then(|v| v.parse::<i32>().ok());
            if let Some(pp) = ppid {
                parents.push((p, pp));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(p, pp) in &parents {
            if pp == parent && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Opens what the restore opened, with a store that keeps no RAM copy
/// (each chunk is copied into the process once).
fn open_image(source: &Source) -> Result<Image, PagerError> {
    let opts = StoreOptions {
        ram_bytes: 0,
        read_threads: 1,
        ..StoreOptions::default()
    };
    match source {
        Source::Dir { path } => {
            let store = Arc::new(Store::open_with(path, opts)?);
            let name: RefName = DIR_REF.parse().expect("a valid ref");
            let mut image = Image::open_named(store, &name)?;
            image.label = path.display().to_string();
            image.root = None;
            Ok(image)
        }
        Source::Store { dir, name, remote } => {
            let mut store = Store::open_with(dir, opts)?;
            if let Some(url) = remote {
                let tier = snaprun_store::tier::open_remote(url).map_err(StoreError::from)?;
                store.add_remote(tier);
            }
            let name: RefName = name.parse().map_err(|e| PagerError::Snapshot {
                label: name.clone(),
                reason: format!("{e}"),
            })?;
            Ok(Image::open_named(Arc::new(store), &name)?)
        }
    }
}

/// Blocks the signals the pager handles through a signalfd (SIGUSR1 closes
/// the recording window; terminal signals are ignored: leaving would leave
/// pages undelivered) and returns the signalfd. Called before any thread
/// starts, so every thread inherits the mask.
fn signal_fd() -> std::io::Result<OwnedFd> {
    // SAFETY: sigset operations on a live local set, then sigprocmask and
    // signalfd with it; signalfd returns a new fd we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [
            libc::SIGUSR1,
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGHUP,
            libc::SIGPIPE,
        ] {
            libc::sigaddset(&mut set, s);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: eventfd takes integers and returns a new fd we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads and discards what an fd holds (an eventfd's count, signals).
fn drain(fd: &OwnedFd, size: usize) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; size];
    loop {
        // SAFETY: reads at most buf.len() bytes into a live buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return all;
        }
        all.extend_from_slice(&buf[..n as usize]);
    }
}

/// Runs the pager on the control channel at `control_fd`; returns when
/// every page is in (or the restore gave up before resuming).
pub fn run(control_fd: i32) -> Result<(), PagerError> {
    let sig = signal_fd().map_err(|source| PagerError::Control {
        what: "signalfd".into(),
        source,
    })?;
    // The pager is small and must outlive what it serves: out of the OOM
    // killer's way (best effort).
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    // SAFETY: the restore passes the channel at this fd; nothing else in
    // this process owns it.
    let chan = Arc::new(Channel::from_fd(unsafe {
        OwnedFd::from_raw_fd(control_fd)
    }));
    chan.set_recv_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| chan.recv::<ToPager>())
        .map_err(|source| PagerError::Control {
            what: "waiting for the start".into(),
            source,
        })
        .and_then(|m| match m {
            Some((ToPager::Start(start), _)) => Ok(start),
            other => Err(PagerError::Control {
                what: format!("want a start, got {other:?}"),
                source: std::io::ErrorKind::InvalidData.into(),
            }),
        })
        .and_then(|start| {
            let _ = chan.set_recv_timeout(None);
            match Main::new(start, chan.clone(), sig) {
                Ok(main) => main.run(),
                Err(e) => {
                    let _ = chan.send(
                        &FromPager::Failed {
                            reason: e.to_string(),
                        },
                        &[],
                    );
                    Err(e)
                }
            }
        })
}

struct Main {
    /// Held shared while the pager runs: a GC waits, so no chunk it still
    /// has to bring in is collected under it.
    _lock: StoreLock,
    shared: Arc<Shared>,
    chan: Arc<Channel>,
    control_open: bool,
    sig: OwnedFd,
    start: Start,
    root: Digest,
    ws_base: Option<WorkingSet>,
    recorder: Option<Recorder>,
    /// A process the restore attached has exited.
    roots_died: bool,
    window_open: bool,
    resumed_at: Option<Instant>,
    first_attach: Option<Instant>,
    stream_started: Option<Instant>,
    pending: Vec<(Arc<Ctx>, u64)>,
}

impl Main {
    fn new(start: Start, chan: Arc<Channel>, sig: OwnedFd) -> Result<Self, PagerError> {
        let image = open_image(&start.source)?;
        let lock = StoreLock::acquire(image.store().dir(), false).map_err(StoreError::from)?;
        let root = image_root(&image)?;
        if root.to_string() != start.root {
            return Err(PagerError::Snapshot {
                label: image.label.clone(),
                reason: format!(
                    "changed since the restore opened it (root {} then, {root} now)",
                    start.root
                ),
            });
        }
        let ws_base = if start.working_set {
            WorkingSet::load(image.store(), &root)?
        } else {
            None
        };
        let wake = eventfd().map_err(|source| PagerError::Control {
            what: "eventfd".into(),
            source,
        })?;
        let shared = Arc::new(Shared::new(
            image,
            wake,
            Duration::from_millis(start.read_timeout_ms.max(100)),
            start.stats.clone(),
        ));
        *shared.control.lock().unwrap_or_else(|e| e.into_inner()) = Some(chan.clone());
        {
            let mut s = shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.pager_pid = std::process::id();
            s.snapshot = shared.image.label.clone();
            s.ws_loaded_chunks = ws_base.as_ref().map_or(0, |w| w.len());
        }
        let threads = match start.stream_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
            n => n.min(16),
        };
        for _ in 0..threads {
            let s = shared.clone();
            std::thread::spawn(move || worker(s));
        }
        spawn_watchdog(shared.clone());
        tracing::info!(
            snapshot = %shared.image.label,
            working_set = ws_base.as_ref().map_or(0, |w| w.len()),
            threads,
            "pager started"
        );
        Ok(Self {
            _lock: lock,
            shared,
            chan,
            control_open: true,
            sig,
            recorder: start.working_set.then(|| Recorder::new(ws_base.as_ref())),
            root,
            ws_base,
            start,
            roots_died: false,
            window_open: true,
            resumed_at: None,
            first_attach: None,
            stream_started: None,
            pending: Vec::new(),
        })
    }

    /// With working sets, streaming waits for the recording window to
    /// close: a first set then holds what the process needed (not what
    /// streaming happened to bring first), and nothing competes with the
    /// process for the CPU before its first answer (on 2 cores, streaming
    /// from the resume made the first answer slower than no working set at
    /// all; see docs/benchmarks.md).
    fn streaming_waits_for_window(&self) -> bool {
        self.start.working_set
    }

    fn run(mut self) -> Result<(), PagerError> {
        loop {
            while self.shared.failing() {
                // Shared::fail kills, reports and exits the process.
                std::thread::sleep(Duration::from_millis(100));
            }
            let ctxs = self.shared.ctx_list();
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let poll = |fd: &OwnedFd| libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            fds.push(libc::pollfd {
                fd: if self.control_open {
                    self.chan.fd().as_raw_fd()
                } else {
                    -1
                },
                events: libc::POLLIN,
                revents: 0,
            });
            fds.push(poll(&self.shared.wake));
            fds.push(poll(&self.sig));
            for c in &ctxs {
                fds.push(poll(c.uffd.fd()));
                match &c.pidfd {
                    Some(p) => fds.push(poll(p)),
                    None => fds.push(libc::pollfd {
                        fd: -1,
                        events: 0,
                        revents: 0,
                    }),
                }
            }
            let timeout = if !self.pending.is_empty() {
                1
            } else {
                self.window_deadline().map_or(500, |d| {
                    d.saturating_duration_since(Instant::now())
                        .as_millis()
                        .min(500) as i32
                })
            };
            // SAFETY: poll on a live array of pollfds of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.shared.fail(format!("poll: {e}"));
                }
                continue;
            }
            if fds[0].revents != 0 && !self.control()? {
                return Ok(());
            }
            if fds[1].revents != 0 {
                drain(&self.shared.wake, 8);
            }
            if fds[2].revents != 0 {
                self.signals();
            }
            for (i, c) in ctxs.iter().enumerate() {
                if fds[3 + 2 * i].revents != 0 {
                    self.read_events(c);
                }
                if fds[4 + 2 * i].revents != 0 && !c.dead.swap(true, Ordering::Relaxed) {
                    tracing::info!(process = %c.label, "process exited");
                    self.roots_died = true;
                }
            }
            if self.shared.failing() {
                continue;
            }
            self.serve_faults();
            self.send_ready();
            if self.window_deadline().is_some_and(|d| Instant::now() >= d) {
                self.close_window("timer");
            }
            if self.finish_ctxs() {
                self.end();
                return Ok(());
            }
        }
    }

    fn window_deadline(&self) -> Option<Instant> {
        let at = self.resumed_at?;
        self.window_open
            .then(|| at + Duration::from_millis(self.start.window_ms))
    }

    /// A message from the restore; false when the pager should end now
    /// (the restore went away before resuming: its stubs die with it).
    fn control(&mut self) -> Result<bool, PagerError> {
        let got = self
            .chan
            .recv::<ToPager>()
            .map_err(|source| PagerError::Control {
                what: "receiving".into(),
                source,
            })?;
        match got {
            Some((ToPager::Attach(a), fds)) => self.attach(a, fds)?,
            Some((ToPager::Resumed, _)) => {
                self.resumed_at = Some(Instant::now());
                if !self.streaming_waits_for_window() {
                    self.start_streaming();
                }
            }
            Some((ToPager::Start(_), _)) => tracing::warn!("a second start message; ignored"),
            None => {
                self.control_open = false;
                *self
                    .shared
                    .control
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                if self.resumed_at.is_none() {
                    tracing::warn!("the restore ended before resuming the processes; pager exits");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    fn attach(&mut self, a: Attach, fds: Vec<OwnedFd>) -> Result<(), PagerError> {
        let mut fds = fds.into_iter();
        let (Some(ufd), Some(pidfd)) = (fds.next(), fds.next()) else {
            return Err(PagerError::Control {
                what: format!("attach of pid {} came without its fds", a.pid),
                source: std::io::ErrorKind::InvalidData.into(),
            });
        };
        let m = &self.shared.image.manifest;
        let p = m
            .processes
            .get(a.index)
            .ok_or_else(|| PagerError::Snapshot {
                label: self.shared.image.label.clone(),
                reason: format!("attach of process number {}: no such process", a.index),
            })?;
        let in_ranges = |start: u64| a.ranges.iter().any(|r| r.start == start);
        let table = Arc::new(ChunkTable::build(
            p.vmas.iter().filter(|v| in_ranges(v.start)),
        ));
        let ranges = a.ranges.iter().map(|r| {
            (
                r.start,
                Range {
                    end: r.end,
                    wipeonfork: r.wipeonfork,
                    dontfork: r.dontfork,
                },
            )
        });
        let map = PageMap::new(&table, ranges);
        let ws: Vec<usize> = self
            .ws_base
            .as_ref()
            .map(|w| {
                w.chunks_of(p.pid)
                    .iter()
                    .filter_map(|&addr| table.index_of(addr))
                    .collect()
            })
            .unwrap_or_default();
        let ctx = Arc::new(Ctx {
            index: Some(a.index),
            snap_pid: p.pid,
            label: format!("pid {}", a.pid),
            pid: a.pid,
            uffd: Uffd::new(ufd),
            pidfd: Some(pidfd),
            table: table.clone(),
            map: std::sync::Mutex::new(map),
            gate: std::sync::RwLock::new(()),
            dead: false.into(),
            ws_left: ws.len().into(),
            ready_sent: false.into(),
            pushed_chunks: 0.into(),
            pushed_bytes: 0.into(),
        });
        tracing::info!(
            pid = a.pid,
            index = a.index,
            chunks = table.chunks.len(),
            bytes = table.bytes(),
            working_set = ws.len(),
            "serving"
        );
        self.first_attach.get_or_insert_with(Instant::now);
        {
            let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.processes += 1;
            s.lazy_bytes += table.bytes();
        }
        self.shared
            .ctxs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctx.clone());
        let mut w = self.shared.lock_work();
        for chunk in ws {
            w.push.push_back((ctx.clone(), chunk));
        }
        drop(w);
        self.shared.work_cv.notify_all();
        Ok(())
    }

    fn signals(&mut self) {
        let raw = drain(&self.sig, size_of::<libc::signalfd_siginfo>() * 8);
        for info in raw.chunks_exact(size_of::<libc::signalfd_siginfo>()) {
            let signo = u32::from_ne_bytes(info[0..4].try_into().expect("4 bytes")) as i32;
            if signo == libc::SIGUSR1 {
                self.close_window("signal");
            } else {
                tracing::warn!(
                    signal = signo,
                    "ignored: the pager ends when every page is in"
                );
            }
        }
    }

    /// Reads what the uffd has (holding the memory's gate, so that no fill
    /// decided before an event lands after it) and applies the events.
    fn read_events(&mut self, ctx: &Arc<Ctx>) {
        let _g = ctx.gate.write().unwrap_or_else(|e| e.into_inner());
        for _ in 0..MSG_BATCH {
            let msg = match ctx.uffd.read_msg() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(process = %ctx.label, error = %e, "reading the uffd");
                    break;
                }
            };
            let c = &self.shared.counters;
            match msg.event() {
                Event::Fault { address } => self.pending.push((ctx.clone(), address)),
                Event::Fork { ufd } => {
                    Counters::add(&c.forks, 1);
                    // SAFETY: the kernel installed this new uffd in our fd
                    // table when it gave us the fork event.
                    let fd = unsafe { OwnedFd::from_raw_fd(ufd) };
                    let child = Arc::new(Ctx {
                        index: None,
                        snap_pid: ctx.snap_pid,
                        label: format!("a child of pid {}", ctx.pid),
                        pid: ctx.pid,
                        uffd: Uffd::new(fd),
                        pidfd: None,
                        table: ctx.table.clone(),
                        map: std::sync::Mutex::new(ctx.lock_map().fork_clone()),
                        gate: std::sync::RwLock::new(()),
                        dead: false.into(),
                        ws_left: 0.into(),
                        ready_sent: true.into(),
                        pushed_chunks: 0.into(),
                        pushed_bytes: 0.into(),
                    });
                    tracing::info!(process = %ctx.label, pending = child.lock_map().pending_bytes(), "fork: serving the child too");
                    self.shared
                        .ctxs
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(child);
                    self.shared.work_cv.notify_all();
                }
                Event::Remap { from, to, len } => {
                    Counters::add(&c.remaps, 1);
                    ctx.lock_map().remap(from, to, len);
                }
                Event::Remove { start, end } => {
                    Counters::add(&c.removes, 1);
                    ctx.lock_map().remove(start, end);
                }
                Event::Unmap { start, end } => {
                    Counters::add(&c.unmaps, 1);
                    ctx.lock_map().unmap(start, end);
                }
                Event::Unknown(e) => tracing::warn!(event = e, "unknown uffd event"),
            }
        }
    }

    /// Serves the faults read so far; those the kernel refuses now (an
    /// event is being delivered) stay for the next round.
    fn serve_faults(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.shared
            .faults_busy
            .store(pending.len(), Ordering::Relaxed);
        for (ctx, addr) in pending {
            if !ctx.dead.load(Ordering::Relaxed) && !self.serve_fault(&ctx, addr) {
                self.pending.push((ctx, addr));
            }
        }
        self.shared
            .faults_busy
            .store(self.pending.len(), Ordering::Relaxed);
    }

    /// Answers one fault: the whole pending piece of chunk that covers it,
    /// or zeros. False when the kernel said to come back (EAGAIN).
    fn serve_fault(&mut self, ctx: &Arc<Ctx>, addr: u64) -> bool {
        let page = addr & !(PAGE_SIZE - 1);
        let c = &self.shared.counters;
        loop {
            let hit = ctx.lock_map().piece_at(page);
            let out = match hit {
                Some((start, piece)) => {
                    let data = match self.shared.read_chunk(&ctx.table, piece.chunk) {
                        Ok(d) => d,
                        Err(r) => self
                            .shared
                            .fail(format!("{}: fault at {addr:#x}: {r}", ctx.label)),
                    };
                    let Some(out) = self.shared.fill_piece(ctx, start, &piece, &data) else {
                        continue;
                    };
                    if matches!(out, Outcome::Done) {
                        Counters::add(&c.faults, 1);
                        Counters::add(&c.fault_bytes, piece.len);
                        if let (Some(_), Some(rec), true) =
                            (ctx.index, self.recorder.as_mut(), self.window_open)
                        {
                            rec.note(ctx.snap_pid, ctx.table.chunks[piece.chunk].addr);
                        }
                    }
                    out
                }
                None => {
                    let (s, len) = ctx.lock_map().zero_span(page, ZERO_WINDOW);
                    let _g = ctx.gate.read().unwrap_or_else(|e| e.into_inner());
                    let out = zero_range(&ctx.uffd, s, len);
                    if matches!(out, Outcome::Done) {
                        Counters::add(&c.zero_faults, 1);
                    }
                    out
                }
            };
            match out {
                Outcome::Again { .. } => return false,
                Outcome::Gone => {
                    ctx.dead.store(true, Ordering::Relaxed);
                }
                Outcome::Failed(e) => self
                    .shared
                    .fail(format!("{}: fault at {addr:#x}: {e}", ctx.label)),
                _ => {}
            }
            ctx.uffd.wake(page, PAGE_SIZE);
            return true;
        }
    }

    /// Tells the restore which processes have their working set in.
    fn send_ready(&mut self) {
        for c in self.shared.ctx_list() {
            if c.ws_left.load(Ordering::Acquire) == 0 && !c.ready_sent.swap(true, Ordering::Relaxed)
            {
                if let Some(index) = c.index {
                    let (chunks, bytes) = (
                        Counters::get(&c.pushed_chunks),
                        Counters::get(&c.pushed_bytes),
                    );
                    if let Some(t) = self.first_attach {
                        let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.ws_push_ms = t.elapsed().as_secs_f64() * 1e3;
                    }
                    tracing::info!(process = %c.label, pushed_chunks = chunks, pushed_bytes = bytes, "working set in");
                    if self.control_open {
                        let _ = self.chan.send(
                            &FromPager::Ready {
                                index,
                                pushed_chunks: chunks as usize,
                                pushed_bytes: bytes,
                            },
                            &[],
                        );
                    }
                }
            }
        }
    }

    fn start_streaming(&mut self) {
        if self.stream_started.is_some() {
            return;
        }
        self.stream_started = Some(Instant::now());
        self.shared.lock_work().streaming = true;
        self.shared.work_cv.notify_all();
        tracing::info!("streaming the rest");
    }

    /// Ends the recording window: saves the working set, writes the
    /// figures so far, starts streaming.
    fn close_window(&mut self, by: &str) {
        if !self.window_open {
            return;
        }
        self.window_open = false;
        let c = &self.shared.counters;
        let w = Window {
            closed_by: by.to_string(),
            ms_after_resume: self
                .resumed_at
                .map_or(0.0, |t| t.elapsed().as_secs_f64() * 1e3),
            faults: Counters::get(&c.faults),
            fault_bytes: Counters::get(&c.fault_bytes),
            zero_faults: Counters::get(&c.zero_faults),
        };
        let mut saved = None;
        if let Some(rec) = &self.recorder {
            if rec.added() > 0 || self.ws_base.is_none() {
                let ws = rec.finish(&self.root);
                match ws.save(self.shared.image.store()) {
                    Ok(()) => saved = Some(ws.len()),
                    Err(e) => tracing::warn!(error = %e, "could not save the working set"),
                }
            }
        }
        tracing::info!(closed_by = by, faults = w.faults, fault_bytes = w.fault_bytes, zero_faults = w.zero_faults, saved_chunks = ?saved, "recording window closed");
        {
            let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.window = Some(w);
            s.ws_saved_chunks = saved;
        }
        self.write_stats(false);
        self.start_streaming();
    }

    fn write_stats(&self, done: bool) {
        let Some(path) = &self.shared.stats_path else {
            return;
        };
        let mut s = self
            .shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        s.take_counters(&self.shared.counters);
        s.done = done;
        if let Some(t) = self.stream_started.filter(|_| done) {
            s.stream_secs = t.elapsed().as_secs_f64();
            if s.stream_secs > 0.0 {
                s.stream_gbps = s.streamed_bytes as f64 / s.stream_secs / 1e9;
            }
        }
        s.write(path);
    }

    /// Drops memories that need nothing more (every page in, or the
    /// process gone); true when the pager's work is over.
    fn finish_ctxs(&mut self) -> bool {
        let keep: Vec<Arc<Ctx>> = self
            .shared
            .ctx_list()
            .into_iter()
            .filter(|c| {
                let busy = c.ws_left.load(Ordering::Acquire) > 0
                    || !c.ready_sent.load(Ordering::Relaxed)
                    || self.pending.iter().any(|(p, _)| Arc::ptr_eq(p, c));
                let done = c.finished() && !busy;
                if done {
                    tracing::info!(process = %c.label, exited = c.dead.load(Ordering::Relaxed), "done");
                }
                !done
            })
            .collect();
        let live_roots = keep
            .iter()
            .any(|c| c.index.is_some() && !c.dead.load(Ordering::Relaxed));
        *self.shared.ctxs.write().unwrap_or_else(|e| e.into_inner()) = keep.clone();
        if self.resumed_at.is_none() {
            return false;
        }
        if self.roots_died && !live_roots {
            self.close_window("exit");
        } else if keep.is_empty() {
            self.close_window("complete");
        }
        keep.is_empty() && !self.window_open
    }

    fn end(&mut self) {
        while self.shared.failing() {
            std::thread::sleep(Duration::from_millis(100));
        }
        {
            let mut w = self.shared.lock_work();
            w.stop = true;
        }
        self.shared.work_cv.notify_all();
        self.write_stats(true);
        let c = &self.shared.counters;
        tracing::info!(
            faults = Counters::get(&c.faults),
            zero_faults = Counters::get(&c.zero_faults),
            streamed_bytes = Counters::get(&c.streamed_bytes),
            pushed_bytes = Counters::get(&c.pushed_bytes),
            forks = Counters::get(&c.forks),
            "every page is in; pager done"
        );
    }
}
