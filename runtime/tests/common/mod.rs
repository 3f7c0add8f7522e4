//! Harness for the engine system tests: builds the C programs of
//! `tests/programs/`, runs them, and drives the real `snaprun` binary
//! against them. The protocol is in `docs/test-protocol.md`.
//!
//! Every test needs root (ptrace of other processes, PR_SET_MM). Tests run in
//! parallel, each in its own temporary WORKDIR. Set `SNAPRUN_TEST_KEEP=1` to
//! keep the WORKDIRs (their paths are printed) for a look after a failure.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, Once};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The `snaprun` binary under test.
pub const SNAPRUN: &str = env!("CARGO_BIN_EXE_snaprun");

pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
pub const RESULT_TIMEOUT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(10);

/// x86-64 syscall numbers the tests wait on (first field of /proc/PID/syscall).
pub mod nr {
    pub const READ: i64 = 0;
    pub const NANOSLEEP: i64 = 35;
    pub const PAUSE: i64 = 34;
    pub const CLOCK_NANOSLEEP: i64 = 230;
}

/// How a program is told to verify its state after restore.
#[derive(Clone, Copy, Debug)]
pub enum Trigger {
    /// Create WORKDIR/go (the default protocol).
    Go,
    /// Send this signal (after checking the program is where it should be).
    Signal(i32),
    /// Nothing: the program finishes by itself.
    None,
}

fn programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/programs")
}

fn mtime(path: &Path) -> Option<std::time::SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// Builds `tests/programs/NAME.c` (once; again when it or `common.h` is newer
/// than the binary) and returns the binary's path. Safe across parallel test
/// processes: each compiles to its own temporary name and renames.
pub fn build_program(name: &str) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let src = programs_dir().join(format!("{name}.c"));
    let header = programs_dir().join("common.h");
    assert!(src.exists(), "no test program {}", src.display());
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("programs");
    fs::create_dir_all(&out_dir).expect("create the programs build dir");
    let out = out_dir.join(name);
    let newest_src = [mtime(&src), mtime(&header)].into_iter().flatten().max();
    if let (Some(built), Some(newest)) = (mtime(&out), newest_src) {
        if built >= newest {
            return out;
        }
    }
    let tmp = out_dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let output = Command::new("cc")
        .args(["-O1", "-g", "-Wall", "-pthread", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed for {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    fs::rename(&tmp, &out).expect("rename the built program into place");
    out
}

static SUBREAPER: Once = Once::new();

/// Makes this test process the subreaper of the processes `snaprun restore`
/// leaves behind, so that they can be reaped (and their exit status checked)
/// once they finish: otherwise a finished restored process may stay a zombie
/// and keep its pid, which a second restore of the same image needs.
pub fn become_subreaper() {
    SUBREAPER.call_once(|| {
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers and
        // changes only this process's attribute.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(
            rc,
            0,
            "PR_SET_CHILD_SUBREAPER: {}",
            std::io::Error::last_os_error()
        );
    });
}

fn read_lossy(path: &Path) -> String {
    match fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("<{}: {e}>", path.display()),
    }
}

/// Describes a process for a failure message: its status, kernel stack,
/// syscall and wchan, where readable.
pub fn describe_process(pid: i32) -> String {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    if !proc.exists() {
        return format!("/proc/{pid} does not exist\n");
    }
    let mut s = String::new();
    for f in ["status", "stack", "syscall", "wchan", "cmdline"] {
        let p = proc.join(f);
        if let Ok(b) = fs::read(&p) {
            let text = String::from_utf8_lossy(&b).replace('\0', " ");
            s.push_str(&format!("--- /proc/{pid}/{f}:\n{}\n", text.trim_end()));
        }
    }
    if let Ok(exe) = fs::read_link(proc.join("exe")) {
        s.push_str(&format!("--- /proc/{pid}/exe: {}\n", exe.display()));
    }
    s
}

/// The state letter of /proc/PID/stat ('R', 'S', 'Z', 't', ...), if the
/// process exists.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rfind(')')?;
    stat[after + 1..].trim_start().chars().next()
}

/// True if the process exists and is not a zombie.
pub fn is_alive(pid: i32) -> bool {
    matches!(proc_state(pid), Some(c) if c != 'Z' && c != 'X')
}

/// The tracer pid from /proc/PID/status.
pub fn tracer_pid(pid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn cmdline_contains(pid: i32, needle: &[u8]) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c.windows(needle.len()).any(|w| w == needle),
        Err(_) => false,
    }
}

/// Live processes (not zombies) whose command line mentions `needle`.
pub fn live_processes_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.as_os_str().as_bytes();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            if pid != me && is_alive(pid) && cmdline_contains(pid, needle) {
                found.push(pid);
            }
        }
    }
    found
}

/// Sends a signal, panicking if it cannot be sent.
pub fn send_signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with plain integers; the pid is one the test started or
    // restored and still exists (checked by the callers' polling).
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// What `waitpid(pid, WNOHANG)` says about a pid.
enum Reap {
    Exited(ExitStatus),
    Running,
    NotOurChild,
}

fn try_reap(pid: i32) -> Reap {
    let mut status = 0;
    // SAFETY: waitpid on a specific pid with a valid out-pointer; it only
    // reaps that pid, which this test restored (never a std Child's pid).
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        0 => Reap::Running,
        r if r == pid => Reap::Exited(ExitStatus::from_raw(status)),
        _ => Reap::NotOurChild,
    }
}

/// Renders a snaprun invocation's result for a failure message.
pub fn show_output(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout:\n{}--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One program under test: its WORKDIR, the source process, and every
/// process restored from its image. Dropping it SIGKILLs whatever of those
/// still runs.
pub struct Case {
    pub name: String,
    pub exe: PathBuf,
    dir: Option<TempDir>,
    path: PathBuf,
    child: Option<Child>,
    /// The source process's pid.
    pub pid: i32,
    restored: Vec<i32>,
}

impl Case {
    /// Builds and starts `NAME WORKDIR`, and waits for it to be ready.
    pub fn start(name: &str) -> Case {
        Self::start_with(name, &[], &[])
    }

    /// Builds and starts `NAME WORKDIR ARGS...` with extra environment
    /// variables, and waits for it to be ready.
    pub fn start_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> Case {
        become_subreaper();
        let exe = build_program(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("snaprun-{name}-"))
            .tempdir()
            .expect("create WORKDIR");
        let path = dir.path().to_path_buf();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join("out.log"))
            .expect("open out.log");
        let log2 = log.try_clone().expect("dup out.log");
        let mut cmd = Command::new(&exe);
        cmd.arg(&path)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // The program must hold only the fds it sets up: whatever the test
        // runner leaked (a pipe to a CI driver, say) is closed.
        // SAFETY: close_range is async-signal-safe; it runs in the child
        // between fork and exec and touches no memory.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let pid = child.id() as i32;
        let mut case = Case {
            name: name.to_string(),
            exe,
            dir: Some(dir),
            path,
            child: Some(child),
            pid,
            restored: Vec::new(),
        };
        if std::env::var_os("SNAPRUN_TEST_KEEP").is_some() {
            eprintln!("{name}: WORKDIR {}", case.path.display());
        }
        case.wait_ready();
        case
    }

    pub fn workdir(&self) -> &Path {
        &self.path
    }

    pub fn image(&self) -> PathBuf {
        self.path.join("img")
    }

    pub fn out_log(&self) -> String {
        read_lossy(&self.path.join("out.log"))
    }

    fn wait_ready(&mut self) {
        let ready = self.path.join("ready");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(s) = fs::read_to_string(&ready) {
                let pid: i32 = s.trim().parse().unwrap_or_else(|_| {
                    panic!(
                        "{}: bad ready file {s:?}\n--- out.log:\n{}",
                        self.name,
                        self.out_log()
                    )
                });
                assert_eq!(pid, self.pid, "{}: ready names another pid", self.name);
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}: exited ({status}) before it was ready\n--- result: {}\n--- out.log:\n{}",
                    self.name,
                    read_lossy(&self.path.join("result")),
                    self.out_log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: not ready after {READY_TIMEOUT:?}\n--- out.log:\n{}\n{}",
                    self.name,
                    self.out_log(),
                    describe_process(self.pid)
                );
            }
            sleep(POLL);
        }
    }

    /// Runs `snaprun ARGS` and returns its output.
    pub fn snaprun<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(SNAPRUN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run snaprun")
    }

    /// Runs `snaprun checkpoint --pid PID --image-path WORKDIR/img EXTRA...`.
    pub fn checkpoint(&self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let image = self.image();
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("checkpoint"),
            OsStr::new("--pid"),
            OsStr::new(&pid),
            OsStr::new("--image-path"),
            image.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        self.snaprun(args)
    }

    /// Checkpoints with the default (the source is killed), asserts success,
    /// and reaps the source, which must have died of SIGKILL.
    pub fn checkpoint_ok(&mut self) {
        let out = self.checkpoint(&[]);
        self.assert_ok("snaprun checkpoint", &out);
        self.reap_source_killed();
    }

    /// Panics with snaprun's output and the program's log unless `out` is a
    /// success.
    pub fn assert_ok(&self, what: &str, out: &Output) {
        assert!(
            out.status.success(),
            "{}: {}\n--- out.log:\n{}",
            self.name,
            show_output(what, out),
            self.out_log()
        );
    }

    /// Waits (10 s at most) for the source process to end and asserts it
    /// was killed by SIGKILL.
    pub fn reap_source_killed(&mut self) {
        let status = self.wait_source_exit(Duration::from_secs(10));
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{}: the source ended with {status}, want SIGKILL\n--- out.log:\n{}",
            self.name,
            self.out_log()
        );
    }

    /// Waits for the source process (the harness's child) to exit.
    pub fn wait_source_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the source was already reaped");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: the source (pid {}) still runs after {timeout:?}\n{}\n--- out.log:\n{}",
                    self.name,
                    self.pid,
                    describe_process(self.pid),
                    self.out_log()
                );
            }
            sleep(POLL);
        }
    }

    /// True while the source process has not exited.
    pub fn source_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// Runs `snaprun restore --image-path WORKDIR/img --pid-file WORKDIR/pidfile EXTRA...`.
    pub fn restore(&mut self, extra: &[&str]) -> Output {
        let image = self.image();
        let pidfile = self.path.join("pidfile");
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("restore"),
            OsStr::new("--image-path"),
            image.as_os_str(),
            OsStr::new("--pid-file"),
            pidfile.as_os_str(),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let out = self.snaprun(args);
        // Registered before any assertion, so that Drop cleans up.
        if let Some(pid) = parse_pid(&out.stdout) {
            if !self.restored.contains(&pid) {
                self.restored.push(pid);
            }
        }
        out
    }

    /// Restores, asserts success, and returns the restored pid (which must
    /// be the source's pid, also written to the pid file).
    pub fn restore_ok(&mut self) -> i32 {
        let out = self.restore(&[]);
        self.restored_from(&out)
    }

    /// Checks a successful restore's output and returns the restored pid.
    pub fn restored_from(&mut self, out: &Output) -> i32 {
        let pid = parse_pid(&out.stdout);
        if let Some(pid) = pid {
            if !self.restored.contains(&pid) {
                self.restored.push(pid);
            }
        }
        self.assert_ok("snaprun restore", out);
        let pid = pid.unwrap_or_else(|| {
            panic!(
                "{}: snaprun restore printed no pid\n{}",
                self.name,
                show_output("snaprun restore", out)
            )
        });
        assert_eq!(
            pid, self.pid,
            "{}: restored as pid {pid}, want the original pid",
            self.name
        );
        let file = read_lossy(&self.path.join("pidfile"));
        assert_eq!(
            file.trim(),
            pid.to_string(),
            "{}: --pid-file holds {file:?}, stdout said {pid}",
            self.name
        );
        pid
    }

    /// Creates WORKDIR/go (atomically).
    pub fn go(&self) {
        let tmp = self.path.join("go.tmp");
        File::create(&tmp).expect("create go.tmp");
        fs::rename(&tmp, self.path.join("go")).expect("rename go");
    }

    /// Triggers the program as `trigger` says.
    pub fn trigger(&self, pid: i32, trigger: Trigger) {
        match trigger {
            Trigger::Go => self.go(),
            Trigger::Signal(sig) => send_signal(pid, sig),
            Trigger::None => {}
        }
    }

    /// Removes result and go, for another run from the same image.
    pub fn reset(&self) {
        for f in ["result", "go", "pidfile"] {
            match fs::remove_file(self.path.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => panic!("remove {f}: {e}"),
            }
        }
    }

    pub fn result(&self) -> Option<String> {
        fs::read_to_string(self.path.join("result")).ok()
    }

    fn diagnostics(&self, pid: i32) -> String {
        format!(
            "--- result: {}\n--- out.log:\n{}\n{}",
            read_lossy(&self.path.join("result")),
            self.out_log(),
            describe_process(pid)
        )
    }

    /// Waits until `pid` is blocked in one of the syscalls `nrs` (as
    /// /proc/PID/syscall says): so a checkpoint catches it there, or a
    /// signal meant to interrupt that syscall does not come early.
    pub fn wait_in_syscall(&self, pid: i32, nrs: &[i64]) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let sc = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            let first = sc.split_whitespace().next().unwrap_or("");
            if let Ok(n) = first.parse::<i64>() {
                if nrs.contains(&n) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: pid {pid} not in syscall {nrs:?} after {READY_TIMEOUT:?}\n{}",
                    self.name,
                    self.diagnostics(pid)
                );
            }
            sleep(POLL);
        }
    }

    /// Waits until `pid` runs in user space (/proc/PID/syscall says
    /// "running"; a busy loop shows that almost always).
    pub fn wait_running(&self, pid: i32) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = 0;
        loop {
            let sc = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            if sc.trim() == "running" && proc_state(pid) == Some('R') {
                seen += 1;
                if seen >= 3 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: pid {pid} not running in user space after {READY_TIMEOUT:?}\n{}",
                    self.name,
                    self.diagnostics(pid)
                );
            }
            sleep(POLL);
        }
    }

    /// Waits for WORKDIR/result and returns it; panics with diagnostics if
    /// it does not come within 15 s, or if the process ends without one.
    /// Then waits for the process to exit and checks it exited with 0.
    pub fn wait_result(&mut self, pid: i32) -> String {
        let deadline = Instant::now() + RESULT_TIMEOUT;
        let source = pid == self.pid && self.child.is_some();
        let result = loop {
            if let Some(r) = self.result() {
                break r;
            }
            let gone = if source {
                self.child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                    .map(|s| s.to_string())
            } else {
                match try_reap(pid) {
                    Reap::Exited(s) => Some(s.to_string()),
                    Reap::Running => None,
                    Reap::NotOurChild => (!is_alive(pid)).then(|| "gone".to_string()),
                }
            };
            if let Some(how) = gone {
                // One last look: the result may have landed just before exit.
                if let Some(r) = self.result() {
                    break r;
                }
                panic!(
                    "{}: pid {pid} ended ({how}) without a result\n{}",
                    self.name,
                    self.diagnostics(pid)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no result from pid {pid} after {RESULT_TIMEOUT:?}\n{}",
                    self.name,
                    self.diagnostics(pid)
                );
            }
            sleep(POLL);
        };
        self.wait_exit_zero(pid, &result);
        result
    }

    /// After a result: the process must exit with status 0.
    fn wait_exit_zero(&mut self, pid: i32, result: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        if pid == self.pid && self.child.is_some() {
            let status = self.wait_source_exit(Duration::from_secs(10));
            assert!(
                status.success(),
                "{}: wrote {result:?} and exited {status}\n{}",
                self.name,
                self.out_log()
            );
            return;
        }
        loop {
            match try_reap(pid) {
                Reap::Exited(status) => {
                    assert!(
                        status.success(),
                        "{}: restored pid {pid} wrote {result:?} and exited {status}\n{}",
                        self.name,
                        self.out_log()
                    );
                    return;
                }
                Reap::NotOurChild if !is_alive(pid) => {
                    // It may become our (zombie) child a moment later, when
                    // whatever parented it exits: reap it then, if so.
                    let until = Instant::now() + Duration::from_secs(1);
                    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
                        let _ = try_reap(pid);
                        sleep(POLL);
                    }
                    return;
                }
                _ => {}
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: pid {pid} wrote {result:?} but did not exit\n{}",
                    self.name,
                    self.diagnostics(pid)
                );
            }
            sleep(POLL);
        }
    }

    /// Waits (5 s at most) until `pid` is free again: reaped, or gone from
    /// /proc. A zombie that is not our child and stays keeps the pid, and a
    /// later restore cannot have it: that panics here, naming its parent.
    pub fn wait_pid_gone(&self, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let _ = try_reap(pid);
            if !Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: pid {pid} finished but is not reaped, so its pid stays taken\n{}",
                    self.name,
                    describe_process(pid)
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the result and asserts it is PASS.
    pub fn expect_pass(&mut self, pid: i32) {
        let r = self.wait_result(pid);
        assert_eq!(
            r.trim(),
            "PASS",
            "{}: pid {pid} reported {r:?}\n--- out.log:\n{}",
            self.name,
            self.out_log()
        );
    }

    /// Asserts that nothing restored from this image is left: no live
    /// process mentions the WORKDIR, and the original pid is free, a zombie,
    /// or another program. Waits up to 3 s for a killed stub to go.
    pub fn assert_nothing_left(&self, context: &str) {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut left = live_processes_mentioning(&self.path);
            if is_alive(self.pid) {
                let exe = fs::read_link(format!("/proc/{}/exe", self.pid)).ok();
                let ours = exe.as_deref() == Some(self.exe.as_path())
                    || exe.as_deref() == Some(Path::new(SNAPRUN))
                    || cmdline_contains(self.pid, self.path.as_os_str().as_bytes());
                if ours && !left.contains(&self.pid) {
                    left.push(self.pid);
                }
            }
            // Reap any that ended as our children.
            for &p in &left {
                if let Reap::Exited(_) = try_reap(p) {}
            }
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                let desc: String = left.iter().map(|&p| describe_process(p)).collect();
                panic!(
                    "{}: {context}: processes left behind: {left:?}\n{desc}",
                    self.name
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// The standard cycle: checkpoint (the source is killed), restore,
    /// trigger, expect PASS.
    pub fn checkpoint_restore_pass(&mut self, trigger: Trigger) {
        self.checkpoint_ok();
        let pid = self.restore_ok();
        self.trigger(pid, trigger);
        self.expect_pass(pid);
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let needle = self.path.as_os_str().as_bytes().to_vec();
        for &pid in &self.restored {
            // Only a process that is still ours: its command line names our
            // WORKDIR (a pid can be reused once the restored one is reaped).
            if is_alive(pid) && cmdline_contains(pid, &needle) {
                // SAFETY: kill(2) with plain integers on a process this case
                // restored (checked just above).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = try_reap(pid);
        }
        for pid in live_processes_mentioning(&self.path) {
            // SAFETY: as above: a live process whose command line names this
            // case's unique WORKDIR.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = try_reap(pid);
        }
        if std::env::var_os("SNAPRUN_TEST_KEEP").is_some() {
            // Forgetting the TempDir keeps the directory on disk.
            std::mem::forget(self.dir.take());
        }
    }
}

/// The pid `snaprun restore` printed: the last non-empty line of stdout.
pub fn parse_pid(stdout: &[u8]) -> Option<i32> {
    String::from_utf8_lossy(stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| l.trim().parse().ok())
}

/// True if /proc/cpuinfo lists the CPU flag.
pub fn cpu_has(flag: &str) -> bool {
    fs::read_to_string("/proc/cpuinfo")
        .map(|c| {
            c.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == flag))
        })
        .unwrap_or(false)
}

/// The size of a file.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .size()
}

/// The common case: start `name`, checkpoint, restore, trigger with `go`,
/// and expect PASS.
pub fn roundtrip(name: &str) {
    let mut case = Case::start(name);
    case.checkpoint_restore_pass(Trigger::Go);
}
