//! A private containerd (Debian's 1.6) for the tests: its own config, root,
//! state and socket in a temp dir, a namespace of its own, and `ctr` aimed
//! at it. The system containerd (if any) is never touched.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{close_fds, unique_id, wait_for, SNAPRUN};

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
        // Short paths: unix socket names are limited to 108 bytes.
        let tmp = tempfile::Builder::new()
            .prefix("snaprun-ctrd-")
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
  "io.containerd.internal.v1.opt",
]
[grpc]
  address = "{d}/c.sock"
[ttrpc]
  address = "{d}/c.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
[metrics]
  address = ""
"#
        );
        fs::write(tmp.path().join("config.toml"), config).unwrap();
        let log = fs::File::create(tmp.path().join("containerd.log")).unwrap();
        let mut cmd = Command::new("/usr/bin/containerd");
        cmd.arg("--config")
            .arg(tmp.path().join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = close_fds(&mut cmd).spawn().unwrap();
        let mut c = Containerd {
            tmp,
            namespace: unique_id("snaprun-test"),
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

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args).output().unwrap()
    }

    /// `ctr run` of ROOTFS through the runc shim with snaprun as its binary.
    pub fn run_args<'a>(rootfs: &'a str, id: &'a str, cgroup: &'a str) -> Vec<&'a str> {
        vec![
            "run",
            "--rootfs",
            "--runtime",
            "io.containerd.runc.v2",
            "--runc-binary",
            SNAPRUN,
            "--cgroup",
            cgroup,
            rootfs,
            id,
        ]
    }

    /// The `--root` the shim gives snaprun for this namespace.
    pub fn runtime_root(&self) -> PathBuf {
        Path::new("/run/containerd/runc").join(&self.namespace)
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
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(self.runtime_root());
    }
}
