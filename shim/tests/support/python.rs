//! The example inference server (`tests/workloads/inference_server/`) as a
//! container through containerd: a rootfs skeleton whose `/usr`, venv and
//! interpreter prefix are the host's (bind-mounted read-only, `/lib` and
//! `/lib64` symlinks as on Debian), the server's directory at `/app`, a
//! writable `/out` for its ready file and log, the host's network; and a
//! small HTTP client for its `/embed` and `/health`.
//!
//! Needs the project venv (numpy and the MiniLM weights, made by
//! scripts/setup.sh as `.venv`; `SNAPRUN_VENV` names another). A missing
//! venv is a failure, not a skip.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wait_for;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// The venv, as a path without `..` or links (the container mounts it at
/// this same path).
pub fn venv() -> PathBuf {
    let venv = std::env::var_os("SNAPRUN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let venv = venv.canonicalize().unwrap_or(venv);
    assert!(
        venv.join("bin/python").exists(),
        "{} not found: run `bash scripts/setup.sh` (it makes the venv with numpy and the model) or set SNAPRUN_VENV",
        venv.join("bin/python").display()
    );
    venv
}

/// The interpreter's prefix, from the venv's pyvenv.cfg (`home = PREFIX/bin`).
fn python_prefix(venv: &Path) -> PathBuf {
    let cfg_path = venv.join("pyvenv.cfg");
    let cfg = fs::read_to_string(&cfg_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", cfg_path.display()));
    let home = cfg
        .lines()
        .find_map(|l| l.strip_prefix("home = "))
        .unwrap_or_else(|| panic!("no `home = ` in {}", cfg_path.display()));
    Path::new(home.trim()).parent().unwrap().to_path_buf()
}

/// The server's rootfs and what `ctr run` needs to start it there. Every
/// container made from it has the same rootfs directory, mounts and
/// command line: the same bundle contents, which a restore needs.
pub struct ServerRootfs {
    pub rootfs: PathBuf,
    /// Host side of the container's `/out`.
    pub out: PathBuf,
    mounts: Vec<(PathBuf, String, bool)>,
    python: PathBuf,
}

impl ServerRootfs {
    /// Makes the skeleton in DIR (and DIR-out for `/out`).
    pub fn new(dir: &Path) -> ServerRootfs {
        let venv = venv();
        let prefix = python_prefix(&venv);
        let app = repo().join("tests/workloads/inference_server");
        let out = dir.with_file_name(format!(
            "{}-out",
            dir.file_name().unwrap().to_string_lossy()
        ));
        fs::create_dir_all(&out).unwrap();
        for d in ["usr", "proc", "sys", "dev", "tmp", "etc", "app", "out"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        for d in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{d}"), dir.join(d)).unwrap();
        }
        let mut mounts = vec![
            (PathBuf::from("/usr"), "/usr".to_string(), true),
            (app, "/app".to_string(), true),
            (out.clone(), "/out".to_string(), false),
        ];
        for p in [&prefix, &venv] {
            if !p.starts_with("/usr") {
                let inside = p.to_str().unwrap().to_string();
                fs::create_dir_all(dir.join(inside.trim_start_matches('/'))).unwrap();
                mounts.push((p.clone(), inside, true));
            }
        }
        ServerRootfs {
            rootfs: dir.to_path_buf(),
            out,
            mounts,
            python: venv.join("bin/python"),
        }
    }

    /// `ctr run` flags: the host network and the bind mounts.
    pub fn flags(&self) -> Vec<String> {
        let mut v = vec!["--net-host".to_string()];
        for (src, dst, ro) in &self.mounts {
            let mode = if *ro { "ro" } else { "rw" };
            v.push("--mount".into());
            v.push(format!(
                "type=bind,src={},dst={dst},options=rbind:{mode}",
                src.display()
            ));
        }
        v
    }

    /// The server's command line inside the container (`--port 0`).
    pub fn args(&self) -> Vec<String> {
        [
            self.python.to_str().unwrap(),
            "/app/server.py",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ready-file",
            "/out/ready.json",
            "--log",
            "/out/server.log",
            "--blas-threads",
            "2",
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// The last lines of the server's log, for messages.
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.out.join("server.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        format!(
            "--- server.log (last lines):\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The port the server wrote in its ready file (it takes a free one).
    pub fn wait_port(&self) -> u16 {
        let ready = self.out.join("ready.json");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = fs::read_to_string(&ready)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                return v["port"].as_u64().expect("port in the ready file") as u16;
            }
            assert!(
                Instant::now() < deadline,
                "no ready file {} after 60 s\n{}",
                ready.display(),
                self.log()
            );
            sleep(Duration::from_millis(20));
        }
    }
}

#[path = "../../../tests/workloads/inference_server/client.rs"]
mod client;
#[allow(unused_imports)]
pub use client::*;

/// Waits until nothing listens on PORT any more.
pub fn wait_port_closed(port: u16) {
    wait_for(&format!("port {port} to close"), || {
        TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}
