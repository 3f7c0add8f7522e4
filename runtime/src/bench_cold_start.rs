//! `snaprun bench cold-start`: the Python inference server
//! (`tests/workloads/inference_server/server.py`, `--size-mb N` of extra
//! weights) measured in one run: its cold start, an eager restore, a lazy
//! restore recording the working set and one pushing it, each to the first
//! correct answer; the bytes faulted before that answer; the pager's
//! streaming throughput beside this machine's fresh-memory fill rate (and a
//! bare UFFDIO_COPY loop) measured in the same run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use snaprun_snapshot::pager::fill::{fill_range, Outcome};
use snaprun_snapshot::pager::uffd::Uffd;
use snaprun_snapshot::pager::Stats;

#[derive(clap::Args)]
pub struct ColdStartArgs {
    /// MiB of extra weights the server holds (its `--size-mb`).
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// The server (default: tests/workloads/inference_server/server.py).
    #[arg(long)]
    server: Option<PathBuf>,
    /// The Python to run it with (default: $SNAPRUN_VENV/bin/python, else
    /// .venv/bin/python).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Checkpoint without compression (chunks stored raw).
    #[arg(long)]
    no_compress: bool,
    /// Where to put the snapshot (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Rounds, each a cold start, an eager restore, a lazy restore that
    /// records a working set and one that pushes it, in that order; the
    /// table gives medians (and the range).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
}

const TEXTS: &str = r#"{"texts": ["snaprun restores a warmed inference process.", "The quick brown fox jumps over the lazy dog."]}"#;

/// One way of getting to a first answer: the median of its rounds.
#[derive(Clone, Debug, Default, Serialize)]
struct Start {
    name: String,
    /// Seconds from the start (process spawn or `snaprun restore`) to the
    /// first correct answer.
    secs: f64,
    /// Each round's `secs`, in order.
    rounds: Vec<f64>,
    /// Cold start time / this one.
    speedup: f64,
    /// Seconds `snaprun restore` took (to the processes running).
    restore_secs: Option<f64>,
    /// Faults (and their stored bytes) before the first answer (lazy).
    faults: Option<u64>,
    fault_bytes: Option<u64>,
    /// Working-set bytes pushed before the resume (lazy).
    pushed_bytes: Option<u64>,
    /// The pager's streaming after the answer (lazy): bytes and GB/s.
    streamed_bytes: Option<u64>,
    stream_gbps: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    size_mb: u64,
    runs: u32,
    /// The snapshot's chunks stored raw (`--no-compress`).
    no_compress: bool,
    /// /proc/loadavg at the start and at the end (other work on the
    /// machine moves every figure).
    load_before: String,
    load_after: String,
    starts: Vec<Start>,
    /// First-touch memcpy into fresh anonymous memory (4 KiB pages, as
    /// the pager makes), one thread and as many as the pager runs: the
    /// best of three runs (the first run of a VM can be slower: the host
    /// backs guest memory as it is first touched).
    fresh_fill_gbps_1: f64,
    fresh_fill_gbps_n: f64,
    fill_threads: usize,
    /// A bare UFFDIO_COPY loop (one thread) into fresh registered memory.
    uffd_copy_gbps: f64,
    /// The pager's best streaming rate / the fresh fill with its threads.
    pager_vs_fill: f64,
}

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(rel)
}

fn python(args: &ColdStartArgs) -> PathBuf {
    args.python.clone().unwrap_or_else(|| {
        std::env::var_os("SNAPRUN_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_path(".venv"))
            .join("bin/python")
    })
}

/// One HTTP/1.0 POST /embed; the body on a 200.
fn embed(port: u16) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "POST /embed HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{TEXTS}",
        TEXTS.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

/// Polls /embed until it answers (2 ms apart); the time it answered and
/// the embeddings.
fn first_answer(port: u16, timeout: Duration) -> anyhow::Result<(Instant, serde_json::Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = embed(port) {
            return Ok((Instant::now(), v["embeddings"].clone()));
        }
        if Instant::now() > deadline {
            bail!("no answer on port {port} after {timeout:?}");
        }
        sleep(Duration::from_millis(2));
    }
}

fn snaprun() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the snaprun binary")
}

/// Runs `snaprun ARGS`; its stdout and stderr.
fn run_snaprun(args: &[&str]) -> anyhow::Result<(String, String)> {
    let mut cmd = Command::new(snaprun()?);
    cmd.args(args).stdin(Stdio::null());
    close_inherited(&mut cmd);
    let out = cmd.output()?;
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        bail!("snaprun {}: {}\n{e}", args.join(" "), out.status);
    }
    Ok((o, e))
}

fn close_inherited(cmd: &mut Command) {
    // SAFETY: close_range is async-signal-safe; it runs in the child
    // between fork and exec and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
}

/// SIGKILLs a restored process and reaps it (this process is the
/// subreaper of what it restores), so its pid is free for the next one.
fn kill_and_reap(pid: i32) {
    // SAFETY: kill/waitpid with integers on a process this bench restored.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
}

fn wait_stats(path: &Path, ok: impl Fn(&Stats) -> bool) -> anyhow::Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Ok(s) = Stats::read(path) {
            if let Some(e) = &s.error {
                bail!("the pager failed: {e}");
            }
            if ok(&s) {
                return Ok(s);
            }
        }
        if Instant::now() > deadline {
            bail!("no pager figures in {}", path.display());
        }
        sleep(Duration::from_millis(5));
    }
}

/// A restore (eager, or lazy with the pager's figures in `stats`) timed to
/// the first correct answer.
fn restore_round(
    name: &str,
    img: &Path,
    port: u16,
    want: &serde_json::Value,
    lazy: Option<&Path>,
) -> anyhow::Result<Start> {
    let img_s = img.display().to_string();
    let mut args = vec!["restore", "--image-path", &img_s];
    let stats_s;
    let log_s;
    if let Some(stats) = lazy {
        let _ = std::fs::remove_file(stats);
        stats_s = stats.display().to_string();
        log_s = stats.with_extension("log").display().to_string();
        args.extend(["--lazy", "--ws-window", "600000", "--pager-stats", &stats_s]);
        args.extend(["--pager-log", &log_s]);
    }
    let t0 = Instant::now();
    let (out, err) = run_snaprun(&args)?;
    let restored = t0.elapsed().as_secs_f64();
    let pid: i32 = out.trim().lines().last().unwrap_or("").parse()?;
    let (t1, got) = first_answer(port, Duration::from_secs(120))?;
    let mut start = Start {
        name: name.to_string(),
        secs: (t1 - t0).as_secs_f64(),
        restore_secs: Some(restored),
        ..Default::default()
    };
    if let Some(stats) = lazy {
        let pager: i32 = err
            .lines()
            .find_map(|l| l.split("pager pid ").nth(1))
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .context("no pager pid in restore's output")?;
        // The answer is in: close the recording window there.
        // SAFETY: kill(2) with integers on the pager this restore started.
        unsafe { libc::kill(pager, libc::SIGUSR1) };
        let w = wait_stats(stats, |s| s.window.is_some())?;
        let done = wait_stats(stats, |s| s.done)?;
        let win = w.window.expect("checked");
        start.faults = Some(win.faults);
        start.fault_bytes = Some(win.fault_bytes);
        start.pushed_bytes = Some(done.ws_pushed_bytes);
        start.streamed_bytes = Some(done.streamed_bytes);
        start.stream_gbps = Some(done.stream_gbps);
        // SAFETY: waitpid on the pager (our child: subreaper) once done.
        unsafe {
            let mut st = 0;
            libc::waitpid(pager, &mut st, 0);
        }
    }
    if &got != want {
        bail!("{name}: the restored server answered other embeddings");
    }
    kill_and_reap(pid);
    Ok(start)
}

/// First-touch copy of `total` bytes from a warm 256 KiB buffer into fresh
/// anonymous memory (4 KiB pages, as UFFDIO_COPY makes), on `threads`
/// threads; the best GB/s of three runs.
fn fresh_fill(total: usize, threads: usize) -> f64 {
    let chunk = vec![0x5au8; 256 << 10];
    let per = total / threads / chunk.len() * chunk.len();
    let mut best = 0.0f64;
    for _ in 0..3 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    // SAFETY: a fresh private anonymous mapping, written
                    // only within its length, unmapped below.
                    unsafe {
                        let m = libc::mmap(
                            std::ptr::null_mut(),
                            per,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                            -1,
                            0,
                        );
                        assert_ne!(m, libc::MAP_FAILED, "mmap for the fill baseline");
                        libc::madvise(m, per, libc::MADV_NOHUGEPAGE);
                        let mut at = 0;
                        while at < per {
                            std::ptr::copy_nonoverlapping(
                                chunk.as_ptr(),
                                m.cast::<u8>().add(at),
                                chunk.len(),
                            );
                            at += chunk.len();
                        }
                        libc::munmap(m, per);
                    }
                });
            }
        });
        best = best.max((per * threads) as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// UFFDIO_COPY of `total` bytes, 256 KiB at a time, into fresh memory of
/// this process registered with a uffd (one thread); GB/s.
fn uffd_copy_loop(total: usize) -> anyhow::Result<f64> {
    // SAFETY: userfaultfd takes flags and returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if fd < 0 {
        bail!("userfaultfd: {}", std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor returned by the kernel.
    let uffd = Uffd::new(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    uffd.api(0)?;
    // SAFETY: a fresh private anonymous mapping, unmapped below.
    let mem = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mem == libc::MAP_FAILED {
        bail!("mmap: {}", std::io::Error::last_os_error());
    }
    uffd.register_missing(mem as u64, total as u64)?;
    let chunk = vec![0x5au8; 256 << 10];
    let t = Instant::now();
    let mut at = 0;
    while at + chunk.len() <= total {
        if fill_range(&uffd, mem as u64 + at as u64, &chunk) != Outcome::Done {
            bail!("UFFDIO_COPY failed at +{at:#x}");
        }
        at += chunk.len();
    }
    let gbps = at as f64 / t.elapsed().as_secs_f64() / 1e9;
    // SAFETY: unmaps the mapping made above; nothing refers to it.
    unsafe { libc::munmap(mem, total) };
    Ok(gbps)
}

pub fn run(args: ColdStartArgs) -> anyhow::Result<()> {
    // SAFETY: prctl with integers; makes restored processes and pagers our
    // children once their parent (snaprun restore) exits, to be reaped.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let py = python(&args);
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| repo_path("tests/workloads/inference_server/server.py"));
    if !py.exists() || !server.exists() {
        bail!(
            "{} or {} not found: run from the repository root after scripts/setup.sh",
            py.display(),
            server.display()
        );
    }
    let mut b = tempfile::Builder::new();
    b.prefix("snaprun-bench-cold-");
    let work = match &args.work_dir {
        Some(d) => b.tempdir_in(d)?,
        None => b.tempdir()?,
    };
    let ready = work.path().join("ready.json");
    let log = work.path().join("server.log");
    let img = work.path().join("img");
    let mut report = Report {
        size_mb: args.size_mb,
        runs: args.runs,
        no_compress: args.no_compress,
        load_before: loadavg(),
        ..Default::default()
    };

    let size = args.size_mb.to_string();
    let stats = work.path().join("pager.json");
    let img_s = img.display().to_string();
    let ws_dir = img.join("working-sets");
    let mut rounds: [Vec<Start>; 4] = Default::default();
    let mut want = None;
    // The snapshot's port (its listening socket is restored): round 0's.
    let mut snap_port = 0;
    for round in 0..args.runs {
        // Cold start: process start to the first correct answer. The
        // first round's process, warmed by a second request, is the
        // snapshot every restore starts from.
        let (mut child, port, cold, answer) = cold_start(&py, &server, &size, &ready, &log)?;
        if want.as_ref().is_some_and(|w| w != &answer) {
            bail!("round {round}: the cold server answered other embeddings");
        }
        let want = want.get_or_insert(answer);
        rounds[0].push(Start {
            name: "cold start".into(),
            secs: cold,
            ..Default::default()
        });
        if round == 0 {
            snap_port = port;
            embed(port).context("warm-up request")?;
            let pid = child.id().to_string();
            let mut ck = vec!["checkpoint", "--pid", &pid, "--image-path", &img_s];
            if args.no_compress {
                ck.push("--no-compress");
            }
            run_snaprun(&ck)?;
        } else {
            let _ = child.kill();
        }
        child.wait()?;
        let _ = std::fs::remove_file(&ready);

        rounds[1].push(restore_round("eager restore", &img, snap_port, want, None)?);
        // Each round records its own set: the lazy restore without one
        // starts from none.
        if ws_dir.exists() {
            std::fs::remove_dir_all(&ws_dir)
                .with_context(|| format!("removing {}", ws_dir.display()))?;
        }
        rounds[2].push(restore_round(
            "lazy restore",
            &img,
            snap_port,
            want,
            Some(&stats),
        )?);
        rounds[3].push(restore_round(
            "lazy restore, working set",
            &img,
            snap_port,
            want,
            Some(&stats),
        )?);
    }
    report.starts = rounds.iter().map(|r| median_start(r)).collect();
    let cold = report.starts[0].secs;
    for s in &mut report.starts {
        s.speedup = cold / s.secs;
    }

    let total = (args.size_mb.max(256) as usize) << 20;
    report.fill_threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    report.fresh_fill_gbps_1 = fresh_fill(total, 1);
    report.fresh_fill_gbps_n = fresh_fill(total, report.fill_threads);
    report.uffd_copy_gbps = uffd_copy_loop(total)?;
    let best = report
        .starts
        .iter()
        .filter_map(|s| s.stream_gbps)
        .fold(0.0, f64::max);
    report.pager_vs_fill = best / report.fresh_fill_gbps_n;
    report.load_after = loadavg();

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Starts the server cold; its process, port, the seconds from the spawn
/// to the first correct answer, and that answer.
fn cold_start(
    py: &Path,
    server: &Path,
    size_mb: &str,
    ready: &Path,
    log: &Path,
) -> anyhow::Result<(std::process::Child, u16, f64, serde_json::Value)> {
    let mut cmd = Command::new(py);
    cmd.arg(server)
        .args(["--host", "127.0.0.1", "--port", "0", "--size-mb", size_mb])
        .arg("--ready-file")
        .arg(ready)
        .arg("--log")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    close_inherited(&mut cmd);
    let t0 = Instant::now();
    let mut child = cmd.spawn().context("starting the server")?;
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(ready) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            break v["port"].as_u64().context("port in the ready file")? as u16;
        }
        if let Some(st) = child.try_wait()? {
            bail!("the server exited with {st}; see {}", log.display());
        }
        sleep(Duration::from_millis(2));
    };
    let (t1, answer) = first_answer(port, Duration::from_secs(600))?;
    Ok((child, port, (t1 - t0).as_secs_f64(), answer))
}

/// The round whose time is the median (the lower one of an even count),
/// with every round's time in `rounds`.
fn median_start(rounds: &[Start]) -> Start {
    let mut by_time: Vec<&Start> = rounds.iter().collect();
    by_time.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let mut m = by_time[(by_time.len() - 1) / 2].clone();
    m.rounds = rounds.iter().map(|r| r.secs).collect();
    m
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

fn print_table(r: &Report) {
    println!(
        "Python inference server, {} MiB of extra weights, chunks stored {}; time to the first correct answer{}:",
        r.size_mb,
        if r.no_compress { "raw" } else { "zstd-1 (raw when that saves under 10 %)" },
        if r.runs > 1 { format!(", median of {} rounds (range)", r.runs) } else { String::new() }
    );
    println!(
        "{:<28} {:>8} {:>15} {:>9} {:>9} {:>22} {:>10} {:>20}",
        "",
        "answer s",
        "range",
        "vs cold",
        "restore s",
        "faulted before answer",
        "pushed",
        "streamed after"
    );
    for s in &r.starts {
        let faulted = match (s.faults, s.fault_bytes) {
            (Some(n), Some(b)) => format!("{} ({n})", mb(b)),
            _ => "-".into(),
        };
        let streamed = match (s.streamed_bytes, s.stream_gbps) {
            (Some(b), Some(g)) => format!("{} {g:.2} GB/s", mb(b)),
            _ => "-".into(),
        };
        let lo = s.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = s.rounds.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<28} {:>8.3} {:>15} {:>8.1}x {:>9} {:>22} {:>10} {:>20}",
            s.name,
            s.secs,
            format!("{lo:.3}-{hi:.3}"),
            s.speedup,
            s.restore_secs.map_or("-".into(), |r| format!("{r:.3}")),
            faulted,
            s.pushed_bytes.map_or("-".into(), mb),
            streamed
        );
    }
    println!(
        "fresh-memory fill (first-touch memcpy, 4 KiB pages, best of 3): {:.2} GB/s on 1 thread, {:.2} GB/s on {}",
        r.fresh_fill_gbps_1, r.fresh_fill_gbps_n, r.fill_threads
    );
    println!(
        "UFFDIO_COPY loop, 256 KiB at a time, 1 thread: {:.2} GB/s",
        r.uffd_copy_gbps
    );
    println!(
        "pager streaming / fresh fill on {} threads: {:.0} %",
        r.fill_threads,
        r.pager_vs_fill * 100.0
    );
    println!(
        "load average: {} at the start, {} at the end",
        r.load_before, r.load_after
    );
}
