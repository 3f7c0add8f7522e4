//! Test helpers (the `testing` feature): a real S3-compatible server
//! (s3s-fs, installed by scripts/setup.sh) on loopback.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tier::{S3Config, S3Tier, Tier};

/// The bucket every server has.
pub const BUCKET: &str = "snaps";
pub const ACCESS_KEY: &str = "snaprun-test";
pub const SECRET_KEY: &str = "snaprun-secret";

/// A running s3s-fs; killed when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
    root: tempfile::TempDir,
}

impl S3Server {
    // The child is waited for in Drop; clippy cannot see that.
    #[allow(clippy::zombie_processes)]
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts the server on `port` of 127.0.0.1 (0: an ephemeral one).
    #[allow(clippy::zombie_processes)]
    pub fn start_on(port: u16) -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let log = root.path().join("server.log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new("s3s-fs");
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // SAFETY: close_range is async-signal-safe; it only closes fds the
        // child inherited beyond stdio (the tool shell leaks some).
        unsafe {
            cmd.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .expect("s3s-fs not found: run `bash scripts/setup.sh` (cargo install s3s-fs@0.14.1)");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(i) = text.find("server is running at ") {
                let rest = &text[i + "server is running at ".len()..];
                let url: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return Self {
                    child,
                    endpoint: url,
                    root,
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("s3s-fs did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The tier for `s3://BUCKET/prefix`.
    pub fn tier(&self, prefix: &str) -> Arc<dyn Tier> {
        Arc::new(S3Tier::new(config(&self.endpoint, prefix, 3)).unwrap())
    }
}

/// The tier configuration for a test server at `endpoint`.
pub fn config(endpoint: &str, prefix: &str, max_attempts: u32) -> S3Config {
    S3Config {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
        endpoint: Some(endpoint.to_string()),
        region: "us-east-1".into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
        session_token: None,
        max_attempts,
    }
}

impl S3Server {
    /// The environment `snaprun` needs to reach this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The files s3s-fs keeps the pack objects in.
    pub fn pack_files(&self, prefix: &str) -> Vec<PathBuf> {
        let dir = self.root.path().join(BUCKET).join(prefix).join("packs");
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
