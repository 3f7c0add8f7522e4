//! Harness for the shim's system tests: a private containerd (Debian's
//! 1.6) on its own socket, root and state dirs, whose PATH holds the shim
//! under test; `ctr` aimed at it in a namespace of its own; a busybox rootfs
//! from Debian's busybox-static. The system containerd is never touched.
//! Needs root, containerd and busybox-static (scripts/setup.sh), and the
//! `snaprun` binary beside the shim (`cargo build -p snaprun-runtime`, which
//! `cargo test --workspace` does).

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod checkpoint;
pub mod image;
pub mod python;

/// The shim under test.
pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-snaprun-v1");
pub const RUNTIME: &str = "io.containerd.snaprun.v1";
pub const BUSYBOX: &str = "/bin/busybox";
pub const TIMEOUT: Duration = Duration::from_secs(20);
/// The longest one `ctr` command may take.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// The `snaprun` the shim runs: the one built beside it.
pub fn snaprun() -> PathBuf {
    let p = Path::new(SHIM).with_file_name("snaprun");
    assert!(
        p.is_file(),
        "{} missing: build it (cargo build -p snaprun-runtime)",
        p.display()
    );
    p
}

/// Closes every fd from 3 on in a child (the tool shell leaks some).
pub fn close_fds(cmd: &mut Command) -> &mut Command {
    // SAFETY: close_range is async-signal-safe and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        })
    }
}

/// A unique name for this test process.
pub fn unique_id(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls F until it returns Some, or panics after TIMEOUT naming WHAT.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(20));
    }
}

/// Fills DIR with busybox and a symlink per applet.
pub fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: install busybox-static (scripts/setup.sh)"
    );
    for d in ["bin", "tmp", "etc", "root", "proc", "sys", "dev"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = symlink("busybox", dir.join("bin").join(applet));
        }
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
}

/// stdout then stderr of a command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub struct Containerd {
    pub tmp: TempDir,
    pub namespace: String,
    child: Child,
}

impl Containerd {
    pub fn start() -> Containerd {
        assert!(
            Path::new("/usr/bin/containerd").exists() && Path::new("/usr/bin/ctr").exists(),
            "containerd missing: install the containerd package (scripts/setup.sh)"
        );
        snaprun();
        // Short paths: unix socket names are limited to 108 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("snaprun-shim-")
            .tempdir()
            .unwrap();
        let d = tmp.path().display().to_string();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
  level = "debug"
[metrics]
  address = ""
"#
        );
        fs::write(tmp.path().join("config.toml"), config).unwrap();
        // containerd finds containerd-shim-snaprun-v1 on its PATH.
        let bin = tmp.path().join("bin");
        fs::create_dir(&bin).unwrap();
        symlink(SHIM, bin.join("containerd-shim-snaprun-v1")).unwrap();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display()
        );
        let log = fs::File::create(tmp.path().join("containerd.log")).unwrap();
        let mut cmd = Command::new("/usr/bin/containerd");
        cmd.arg("--config")
            .arg(tmp.path().join("config.toml"))
            .env("PATH", path)
            // Where containerd 1.6 unpacks a checkpoint for a restore (and
            // leaves it): in the test's temp dir, not /tmp.
            .env("XDG_RUNTIME_DIR", tmp.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = close_fds(&mut cmd).spawn().unwrap();
        let mut c = Containerd {
            tmp,
            namespace: unique_id("snaprun-shim"),
            child,
        };
        wait_for("containerd to serve", || {
            if let Ok(Some(st)) = c.child.try_wait() {
                panic!("containerd exited ({st}):\n{}", c.log());
            }
            c.ctr(&["version"]).status.success().then_some(())
        });
        c
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.tmp.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn socket(&self) -> PathBuf {
        self.tmp.path().join("c.sock")
    }

    /// `ctr` against this containerd, in the test's namespace.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/ctr");
        c.arg("--address")
            .arg(self.socket())
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        close_fds(&mut c);
        c
    }

    /// Runs `ctr ARGS` to its end; panics (after killing it) when it
    /// takes more than a minute, so that a shim that never answers fails
    /// the test instead of hanging it.
    pub fn ctr(&self, args: &[&str]) -> Output {
        let child = self
            .ctr_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(CTR_TIMEOUT) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // SAFETY: kill(2) of our own child, not yet reaped (its
                // waiter has not returned).
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("ctr {args:?} did not finish in {CTR_TIMEOUT:?}");
            }
        }
    }

    /// A busybox rootfs for the test, in this containerd's temp dir.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        let dir = self.tmp.path().join(name);
        busybox_rootfs(&dir);
        dir
    }

    /// `ctr run --runtime io.containerd.snaprun.v1 --rootfs ...` with
    /// FLAGS before the rootfs and ARGS after the id.
    pub fn run_args<'a>(
        flags: &[&'a str],
        rootfs: &'a str,
        id: &'a str,
        cgroup: &'a str,
        args: &[&'a str],
    ) -> Vec<&'a str> {
        let mut v = vec!["run", "--rootfs", "--runtime", RUNTIME, "--cgroup", cgroup];
        v.extend_from_slice(flags);
        v.extend([rootfs, id]);
        v.extend_from_slice(args);
        v
    }

    /// The `--root` the shim gives snaprun for this namespace.
    pub fn runtime_root(&self) -> PathBuf {
        Path::new("/run/containerd/snaprun").join(&self.namespace)
    }

    /// The status `ctr task ls` shows for ID.
    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    /// `ctr events` in the background, its output in a file.
    pub fn events(&self) -> EventLog {
        let path = self.tmp.path().join(format!("{}.events", unique_id("ev")));
        let out = fs::File::create(&path).unwrap();
        let child = self
            .ctr_cmd(&["events"])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = EventLog { child, path };
        // Subscribed once an event of ours shows: label the namespace until
        // its update comes through.
        let _ = Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["namespaces", "create", &self.namespace])
            .output();
        let mut n = 0;
        wait_for("ctr events to subscribe", || {
            n += 1;
            let label = format!("snaprun-probe={n}");
            let _ = Command::new("/usr/bin/ctr")
                .arg("--address")
                .arg(self.socket())
                .args(["namespaces", "label", &self.namespace, &label])
                .output();
            sleep(Duration::from_millis(50));
            log.text().contains("/namespaces/update").then_some(())
        });
        log
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Stop whatever the test left, so that the shims exit.
        let tasks = self.ctr(&["task", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.ctr(&["task", "rm", "-f", id]);
        }
        let cs = self.ctr(&["containers", "ls", "-q"]);
        for id in String::from_utf8_lossy(&cs.stdout).lines() {
            let _ = self.ctr(&["containers", "rm", id]);
        }
        // SAFETY: kill(2) with our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(self.runtime_root());
    }
}

/// A running `ctr events`.
pub struct EventLog {
    child: Child,
    path: PathBuf,
}

impl EventLog {
    pub fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap_or_default()
    }

    /// Waits for a line on TOPIC holding every NEEDLE; the line.
    pub fn wait_line(&self, topic: &str, needles: &[&str]) -> String {
        wait_for(&format!("an event {topic} with {needles:?}"), || {
            self.text()
                .lines()
                .find(|l| {
                    l.contains(&format!(" {topic} ")) && needles.iter().all(|n| l.contains(n))
                })
                .map(str::to_string)
        })
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
