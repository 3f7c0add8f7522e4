//! Harness for the Python inference server of
//! `tests/workloads/inference_server/` (a multi-threaded process: a thread
//! per request, a heartbeat thread, OpenBLAS's pool): start it, talk HTTP
//! to it, checkpoint and restore it with the real `snaprun` binary.
//!
//! Needs the project venv (`scripts/setup.sh` makes `.venv`, with numpy and
//! the MiniLM weights); `SNAPRUN_VENV` points elsewhere. A missing venv is a
//! failure, not a skip.

#![allow(dead_code)]

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::{become_subreaper, describe_process, parse_pid, show_output, SNAPRUN};

pub const START_TIMEOUT: Duration = Duration::from_secs(60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn python() -> PathBuf {
    let venv = std::env::var_os("SNAPRUN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    // A path without `..` or links above bin/: the container test mounts the
    // venv at this same path inside a rootfs that has no `runtime/` to climb
    // out of. bin/python itself stays a link (it makes the venv a venv).
    let venv = venv.canonicalize().unwrap_or(venv);
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} not found: run `bash scripts/setup.sh` (it makes the venv with numpy and the model)",
        py.display()
    );
    py
}

#[path = "../../../tests/workloads/inference_server/client.rs"]
mod client;
#[allow(unused_imports)]
pub use client::*;

/// The server under test, its work dir, and every process restored from
/// its image; dropping it SIGKILLs whatever of those still runs.
pub struct Server {
    dir: TempDir,
    child: Option<Child>,
    pub pid: i32,
    pub port: u16,
    restored: Vec<i32>,
}

impl Server {
    /// Starts the server (`--port 0`) and waits for its ready file.
    pub fn start(extra_args: &[&str]) -> Server {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("snaprun-pyserver-")
            .tempdir()
            .expect("temp dir");
        let ready = dir.path().join("ready.json");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(python());
        cmd.arg(repo().join("tests/workloads/inference_server/server.py"))
            .args(["--host", "127.0.0.1", "--port", "0", "--ready-file"])
            .arg(&ready)
            .arg("--log")
            .arg(&log)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: close_range is async-signal-safe; it runs in the child
        // between fork and exec and touches no memory.
        unsafe {
            cmd.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn the Python server");
        let pid = child.id() as i32;
        let mut server = Server {
            dir,
            child: Some(child),
            pid,
            port: 0,
            restored: Vec::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let v: Value = serde_json::from_str(&text).expect("ready file JSON");
                assert_eq!(v["pid"].as_i64(), Some(pid as i64), "ready file {text}");
                server.port = v["port"].as_u64().expect("port") as u16;
                return server;
            }
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited with {status}\n{}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "the server did not get ready in {START_TIMEOUT:?}\n{}",
                server.log()
            );
            sleep(Duration::from_millis(10));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn image(&self) -> PathBuf {
        self.dir.path().join("img")
    }

    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "--- server.log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    pub fn snaprun(&self, args: &[&str]) -> Output {
        Command::new(SNAPRUN)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run snaprun")
    }

    /// `snaprun checkpoint --pid PID --image-path DIR/img EXTRA`; the source
    /// must then die of SIGKILL (it is reaped here).
    pub fn checkpoint(&mut self, extra: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let image = self.image();
        let mut args = vec!["checkpoint", "--pid", &pid, "--image-path"];
        args.push(image.to_str().unwrap());
        args.extend_from_slice(extra);
        let out = self.snaprun(&args);
        assert!(
            out.status.success(),
            "{}\n{}",
            show_output("snaprun checkpoint", &out),
            self.log()
        );
        if !extra.contains(&"--leave-running") {
            let status = self.child.take().unwrap().wait().expect("wait the source");
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "source ended {status}"
            );
        }
        out
    }

    /// `snaprun restore --image-path DIR/img EXTRA`; returns the pid.
    pub fn restore(&mut self, extra: &[&str]) -> (i32, Output) {
        let image = self.image();
        let mut args = vec!["restore", "--image-path", image.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.snaprun(&args);
        let pid = parse_pid(&out.stdout);
        if let Some(p) = pid {
            self.restored.push(p);
        }
        assert!(
            out.status.success(),
            "{}\n{}",
            show_output("snaprun restore", &out),
            self.log()
        );
        (pid.expect("restore printed a pid"), out)
    }

    /// SIGKILLs a restored process and waits (reaping it: this test is the
    /// subreaper) until its pid is free.
    pub fn kill_restored(&mut self, pid: i32) {
        // SAFETY: kill/waitpid with plain integers on a process this test
        // restored.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() {
            let mut status = 0;
            // SAFETY: as above; the status out-pointer is a live local.
            unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            assert!(
                Instant::now() < deadline,
                "restored pid {pid} not gone 10 s after SIGKILL\n{}",
                describe_process(pid)
            );
            sleep(Duration::from_millis(5));
        }
        self.restored.retain(|&p| p != pid);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for &pid in &self.restored {
            // SAFETY: as in kill_restored.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0);
            }
        }
        if std::env::var_os("SNAPRUN_TEST_KEEP").is_some() {
            let keep = self.dir.path().to_path_buf();
            eprintln!("work dir kept: {}", keep.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("temp dir"),
            ));
        }
    }
}
