//! Harness for the OCI runtime tests: a busybox rootfs built from Debian's
//! busybox-static, bundles with a generated config.json, a private `--root`
//! per test, and the real `snaprun` binary. Needs root.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

pub mod containerd;

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const SNAPRUN: &str = env!("CARGO_BIN_EXE_snaprun");
pub const BUSYBOX: &str = "/bin/busybox";
pub const TIMEOUT: Duration = Duration::from_secs(15);

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

/// A unique container id for this test process.
pub fn unique_id(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls F until it returns Some, or panics after TIMEOUT naming WHAT (the
/// Bundle's drop then force-deletes the container, ending its processes).
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

/// A bundle (rootfs + config.json) in a temp dir, and a private state root.
pub struct Bundle {
    pub tmp: TempDir,
    pub id: String,
    pub config: Value,
}

impl Bundle {
    /// The default spec of `snaprun spec`, made to run ARGS without a
    /// terminal, with a writable root and a cgroup of its own.
    pub fn new(name: &str, args: &[&str]) -> Bundle {
        let tmp = tempfile::Builder::new()
            .prefix("snaprun-oci-")
            .tempdir()
            .unwrap();
        let bundle = tmp.path().join("bundle");
        fs::create_dir_all(bundle.join("rootfs")).unwrap();
        busybox_rootfs(&bundle.join("rootfs"));
        let st = close_fds(
            Command::new(SNAPRUN)
                .args(["spec", "--bundle"])
                .arg(&bundle),
        )
        .status()
        .unwrap();
        assert!(st.success(), "snaprun spec failed");
        let mut config: Value =
            serde_json::from_slice(&fs::read(bundle.join("config.json")).unwrap()).unwrap();
        let id = unique_id(name);
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| Value::from(*a)).collect();
        config["root"]["readonly"] = false.into();
        config["linux"]["cgroupsPath"] = format!("snaprun-test/{id}").into();
        Bundle { tmp, id, config }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir().join("rootfs")
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    /// Where the container's stdout and stderr go.
    pub fn out_path(&self) -> PathBuf {
        self.tmp.path().join("out")
    }

    pub fn err_path(&self) -> PathBuf {
        self.tmp.path().join("err")
    }

    pub fn out(&self) -> String {
        fs::read_to_string(self.out_path()).unwrap_or_default()
    }

    pub fn err(&self) -> String {
        fs::read_to_string(self.err_path()).unwrap_or_default()
    }

    pub fn write_config(&self) {
        fs::write(
            self.dir().join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// `snaprun --root ROOT ARGS`, its stdout and stderr captured (for
    /// commands that leave no process holding them).
    pub fn cmd(&self, args: &[&str]) -> Output {
        let mut c = Command::new(SNAPRUN);
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null());
        close_fds(&mut c).output().unwrap()
    }

    /// `snaprun --root ROOT ARGS` with stdin and stdout on /dev/null and
    /// stderr captured through a file, for commands whose processes
    /// outlive them (create, restore --detach): the container's stdio is
    /// /dev/null and holds no pipe of ours.
    pub fn cmd_detached(&self, args: &[&str]) -> Output {
        let err = self.tmp.path().join("cmd-err");
        let mut c = Command::new(SNAPRUN);
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&err).unwrap());
        let status = close_fds(&mut c).status().unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    /// `snaprun ARGS` with stdout and stderr appended to the out and err
    /// files (for create, run, exec: the container inherits them).
    pub fn cmd_to_files(&self, args: &[&str]) -> ExitStatus {
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.out_path())
            .unwrap();
        let err = File::options()
            .create(true)
            .append(true)
            .open(self.err_path())
            .unwrap();
        let mut c = Command::new(SNAPRUN);
        c.arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        close_fds(&mut c).status().unwrap()
    }

    /// Writes the config and creates the container; panics on failure.
    pub fn create(&self) -> i32 {
        self.write_config();
        let pid_file = self.tmp.path().join("pid");
        let bundle = self.dir();
        let st = self.cmd_to_files(&[
            "create",
            "--bundle",
            bundle.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            &self.id,
        ]);
        assert!(st.success(), "create failed: {st}\n{}", self.err());
        fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Runs `snaprun CMD ID` and asserts it succeeded.
    pub fn ok(&self, cmd: &str) -> String {
        let out = self.cmd(&[cmd, &self.id]);
        assert!(
            out.status.success(),
            "{cmd} {} failed: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `snaprun ARGS... ID` and asserts it succeeded; its stdout.
    pub fn ok_args(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        if !matches!(args.first(), Some(&"features") | Some(&"list")) {
            all.push(&self.id);
        }
        let out = self.cmd(&all);
        assert!(
            out.status.success(),
            "{all:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The container's runtime-spec state.
    pub fn state(&self) -> Value {
        serde_json::from_str(&self.ok("state")).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    pub fn wait_status(&self, want: &str) {
        wait_for(&format!("status {want}"), || {
            (self.status() == want).then_some(())
        });
    }

    /// Waits until the container's stdout holds NEEDLE.
    pub fn wait_out(&self, needle: &str) -> String {
        wait_for(&format!("{needle:?} in the container's output"), || {
            let o = self.out();
            o.contains(needle).then_some(o)
        })
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]);
    }
}

/// Asserts OUT failed with exit code 1 and an error holding every NEEDLE.
pub fn assert_fails(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("snaprun: error:"), "stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
}
