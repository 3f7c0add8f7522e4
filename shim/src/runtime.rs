//! The `snaprun` binary, driven with runc's command line (as containerd's
//! runc shim drives runc): every command gets `--root`, and `--log` with
//! JSON lines, from which a failed command's error is read back.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::io::ProcessStdio;
use crate::reaper::{self, Exits};
use crate::restore::Request;

/// How the shim calls `snaprun` for one container.
#[derive(Clone, Debug)]
pub struct Snaprun {
    pub binary: PathBuf,
    /// runc's `--root`: where snaprun keeps container state.
    pub root: PathBuf,
    /// snaprun's log (JSON lines), in the bundle.
    pub log: PathBuf,
}

/// Extra arguments of `create`, `exec` and `restore`.
#[derive(Default)]
pub struct Launch<'a> {
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
}

impl Snaprun {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"])
            .args(args);
        c
    }

    /// The `error` lines snaprun logged after OFFSET (the command's own).
    fn logged_error(&self, offset: u64) -> Option<String> {
        let bytes = fs::read(&self.log).ok()?;
        let tail = bytes.get(offset as usize..)?;
        let text = String::from_utf8_lossy(tail);
        let mut last = None;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["level"] == "error" {
                if let Some(m) = v["msg"].as_str() {
                    last = Some(m.to_string());
                }
            }
        }
        last
    }

    fn log_len(&self) -> u64 {
        fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// Runs CMD; on failure, the error snaprun logged (else its stderr,
    /// else its exit code). Returns its stdout.
    fn run(
        &self,
        exits: &Exits,
        verb: &str,
        id: &str,
        mut cmd: Command,
        stdio: Option<ProcessStdio>,
    ) -> Result<Vec<u8>> {
        let offset = self.log_len();
        match stdio {
            Some(s) => {
                cmd.stdin(s.stdin).stdout(s.stdout).stderr(s.stderr);
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        let what = format!("snaprun {verb} {id}");
        let out = reaper::run(exits, &what, &mut cmd)?;
        // The process's ends of its pipes must not stay open here.
        drop(cmd);
        if out.code == 0 {
            return Ok(out.stdout);
        }
        let message = self
            .logged_error(offset)
            .or_else(|| {
                let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
                (!e.is_empty()).then_some(e)
            })
            .unwrap_or_else(|| format!("exit code {}", out.code));
        Err(Error::Runtime {
            command: verb.to_string(),
            id: id.to_string(),
            message,
        })
    }

    fn launch_args<'a>(args: &mut Vec<&'a str>, l: &'a Launch<'a>) -> Result<()> {
        if let Some(p) = l.pid_file {
            args.extend(["--pid-file", utf8(p)?]);
        }
        if let Some(p) = l.console_socket {
            args.extend(["--console-socket", utf8(p)?]);
        }
        Ok(())
    }

    /// `snaprun create --bundle B ID`: the init waits for `start`.
    pub fn create(
        &self,
        exits: &Exits,
        id: &str,
        bundle: &Path,
        launch: &Launch,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let bundle = bundle
            .to_str()
            .ok_or_else(|| Error::invalid("bundle", "the path is not UTF-8"))?;
        let mut args = vec!["create", "--bundle", bundle];
        Self::launch_args(&mut args, launch)?;
        args.push(id);
        self.run(exits, "create", id, self.command(&args), Some(stdio))
            .map(drop)
    }

    /// `snaprun restore --detach --lazy --bundle B --from NAME:TAG --store DIR ID`.
    pub fn restore(
        &self,
        exits: &Exits,
        id: &str,
        bundle: &Path,
        snapshot: &Request,
        launch: &Launch,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let (bundle, store) = (utf8(bundle)?, utf8(&snapshot.store)?);
        let name = snapshot.snapshot.to_string();
        // Lazily: the pager (ROOT/pager/ID.log) serves the memory, the
        // snapshot's working set pushed before the init resumes.
        let args = vec![
            "restore", "--detach", "--lazy", "--bundle", bundle, "--from", &name, "--store", store,
        ];
        self.run_restore(exits, id, args, launch, stdio)
    }

    /// `snaprun restore --detach --bundle B --image-path DIR ID`: a
    /// checkpoint containerd unpacked into DIR.
    pub fn restore_image(
        &self,
        exits: &Exits,
        id: &str,
        bundle: &Path,
        image: &Path,
        launch: &Launch,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let (bundle, image) = (utf8(bundle)?, utf8(image)?);
        let args = vec![
            "restore",
            "--detach",
            "--bundle",
            bundle,
            "--image-path",
            image,
        ];
        self.run_restore(exits, id, args, launch, stdio)
    }

    /// Runs ARGS (a `restore` command line up to the launch flags) with
    /// the pid file and console socket of LAUNCH, for container ID.
    fn run_restore<'a>(
        &self,
        exits: &Exits,
        id: &'a str,
        mut args: Vec<&'a str>,
        launch: &'a Launch<'a>,
        stdio: ProcessStdio,
    ) -> Result<()> {
        Self::launch_args(&mut args, launch)?;
        args.push(id);
        self.run(exits, "restore", id, self.command(&args), Some(stdio))
            .map(drop)
    }

    /// `snaprun ARGS ID`, where ARGS are a checkpoint's
    /// (`checkpoint --image-path DIR [--leave-running] [runc flags]`).
    pub fn checkpoint(&self, exits: &Exits, id: &str, args: &[String]) -> Result<()> {
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.push(id);
        self.run(exits, "checkpoint", id, self.command(&args), None)
            .map(drop)
    }

    pub fn start(&self, exits: &Exits, id: &str) -> Result<()> {
        self.run(exits, "start", id, self.command(&["start", id]), None)
            .map(drop)
    }

    /// `snaprun exec --detach --process FILE ID`.
    pub fn exec(
        &self,
        exits: &Exits,
        id: &str,
        process: &Path,
        launch: &Launch,
        stdio: ProcessStdio,
    ) -> Result<()> {
        let process = process
            .to_str()
            .ok_or_else(|| Error::invalid("process file", "the path is not UTF-8"))?;
        let mut args = vec!["exec", "--detach", "--process", process];
        Self::launch_args(&mut args, launch)?;
        args.push(id);
        self.run(exits, "exec", id, self.command(&args), Some(stdio))
            .map(drop)
    }

    pub fn kill(&self, exits: &Exits, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run(exits, "kill", id, self.command(&args), None)
            .map(drop)
    }

    pub fn delete(&self, exits: &Exits, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run(exits, "delete", id, self.command(&args), None)
            .map(drop)
    }

    pub fn pause(&self, exits: &Exits, id: &str) -> Result<()> {
        self.run(exits, "pause", id, self.command(&["pause", id]), None)
            .map(drop)
    }

    pub fn resume(&self, exits: &Exits, id: &str) -> Result<()> {
        self.run(exits, "resume", id, self.command(&["resume", id]), None)
            .map(drop)
    }

    /// The pids of the container's processes (`snaprun ps --format json`).
    pub fn ps(&self, exits: &Exits, id: &str) -> Result<Vec<i32>> {
        let out = self.run(
            exits,
            "ps",
            id,
            self.command(&["ps", "--format", "json", id]),
            None,
        )?;
        serde_json::from_slice(&out).map_err(|e| Error::Runtime {
            command: "ps".into(),
            id: id.to_string(),
            message: format!("unexpected output ({e}): {}", String::from_utf8_lossy(&out)),
        })
    }
}

/// P as a `&str` for a command line; a path that is not UTF-8 is an error
/// naming it.
fn utf8(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| Error::invalid("path", format!("{} is not UTF-8", p.display())))
}
