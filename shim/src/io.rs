//! A process's stdio: containerd hands the shim the paths of fifos (empty
//! when a stream is not wanted); the shim gives the process pipes (or, with
//! a terminal, a pty whose master comes back over the console socket) and
//! copies between them and the fifos on a thread per stream.
//!
//! The shim opens an output fifo read-write, so that it never blocks on an
//! absent reader and never gets EPIPE when `ctr` detaches; the data then
//! waits in the fifo as it would with containerd's runc shim.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::Console;
use crate::error::{Error, Result};

/// The fifo paths containerd gave for one process.
#[derive(Clone, Debug, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// What the runtime passes on to the process as fds 0, 1 and 2.
pub struct ProcessStdio {
    pub stdin: File,
    pub stdout: File,
    pub stderr: File,
}

impl ProcessStdio {
    /// The same three fds again (for an attempt that may fail and leave
    /// them to the next one).
    pub fn try_clone(&self) -> Result<Self> {
        let dup = |f: &File| {
            f.try_clone().map_err(|e| Error::Sys {
                what: "dup a process's stdio".into(),
                source: e,
            })
        };
        Ok(ProcessStdio {
            stdin: dup(&self.stdin)?,
            stdout: dup(&self.stdout)?,
            stderr: dup(&self.stderr)?,
        })
    }
}

/// The shim's side of a process's stdio.
pub struct ProcessIo {
    /// Where the stdin copy writes (a pipe or the pty master); taken by
    /// CloseIO, which ends the process's input.
    stdin: Arc<Mutex<Option<File>>>,
    /// The pty master, for window size changes.
    console: Option<Console>,
    drain: Option<Drain>,
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array, which outlives the call.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::last_os("pipe2 for a process's stdio"));
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

fn dev_null() -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))
}

fn open_output_fifo(path: &str) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open the output fifo", path, e))
}

/// Copies FROM into TO until FROM ends (EOF, or EIO from a pty master whose
/// slave side is closed), then tells DONE.
fn spawn_output_copy(mut from: File, mut to: File, what: &'static str, done: Sender<()>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = to.write_all(&buf[..n]) {
                        tracing::warn!(stream = what, error = %e, "write to the fifo failed");
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
                Err(e) => {
                    tracing::warn!(stream = what, error = %e, "read of the process output failed");
                    break;
                }
            }
        }
        let _ = done.send(());
    });
}

/// Opens the stdin fifo (waiting for its writer) and copies it into the
/// shared writer until either ends; then closes the writer.
fn spawn_input_copy(path: String, to: Arc<Mutex<Option<File>>>) {
    thread::spawn(move || {
        let mut from = match File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path, error = %e, "open the stdin fifo failed");
                return;
            }
        };
        let mut buf = vec![0u8; 32 << 10];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            let mut guard = to.lock().unwrap_or_else(|p| p.into_inner());
            let Some(w) = guard.as_mut() else { return };
            if w.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // End of input: the process sees EOF (a pty gets no EOF this way;
        // it ends with the process).
        let mut guard = to.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = guard.take() {
            drop(w);
        }
    });
}

impl ProcessIo {
    /// Pipes for a process without a terminal: the process's ends, and
    /// the shim's side with its copy threads running.
    pub fn pipes(paths: &StdioPaths) -> Result<(ProcessStdio, ProcessIo)> {
        let (done_tx, done_rx) = channel();
        let stdin_w = Arc::new(Mutex::new(None));
        let stdin = if paths.stdin.is_empty() {
            dev_null()?
        } else {
            let (r, w) = pipe()?;
            *stdin_w.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
            spawn_input_copy(paths.stdin.clone(), stdin_w.clone());
            r
        };
        let mut outputs = 0;
        let mut output = |path: &str, what: &'static str| -> Result<File> {
            if path.is_empty() {
                return dev_null();
            }
            let fifo = open_output_fifo(path)?;
            let (r, w) = pipe()?;
            spawn_output_copy(r, fifo, what, done_tx.clone());
            outputs += 1;
            Ok(w)
        };
        let stdout = output(&paths.stdout, "stdout")?;
        let stderr = output(&paths.stderr, "stderr")?;
        Ok((
            ProcessStdio {
                stdin,
                stdout,
                stderr,
            },
            ProcessIo {
                stdin: stdin_w,
                console: None,
                drain: Some(Drain {
                    outputs,
                    done: done_rx,
                }),
            },
        ))
    }

    /// The shim's side for a process with a terminal, once its pty master
    /// arrived: master to the stdout fifo, the stdin fifo to the master.
    pub fn terminal(paths: &StdioPaths, console: Console) -> Result<ProcessIo> {
        let (done_tx, done_rx) = channel();
        let stdin_w = Arc::new(Mutex::new(None));
        if !paths.stdin.is_empty() {
            *stdin_w.lock().unwrap_or_else(|p| p.into_inner()) = Some(console.dup()?);
            spawn_input_copy(paths.stdin.clone(), stdin_w.clone());
        }
        let mut outputs = 0;
        if !paths.stdout.is_empty() {
            let fifo = open_output_fifo(&paths.stdout)?;
            spawn_output_copy(console.dup()?, fifo, "terminal", done_tx.clone());
            outputs = 1;
        }
        Ok(ProcessIo {
            stdin: stdin_w,
            console: Some(console),
            drain: Some(Drain {
                outputs,
                done: done_rx,
            }),
        })
    }

    /// What a terminal process gets from the runtime besides its pty.
    pub fn null_stdio() -> Result<ProcessStdio> {
        Ok(ProcessStdio {
            stdin: dev_null()?,
            stdout: dev_null()?,
            stderr: dev_null()?,
        })
    }

    /// Ends the process's input (CloseIO).
    pub fn close_stdin(&self) {
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        guard.take();
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        match &self.console {
            Some(c) => c.resize(width, height),
            None => Err(Error::FailedPrecondition(
                "the process has no terminal to resize".into(),
            )),
        }
    }

    /// The waiter for the output copies, taken once by whoever reports
    /// the process's exit.
    pub fn take_drain(&mut self) -> Option<Drain> {
        self.drain.take()
    }
}

/// The end of a process's output copies.
pub struct Drain {
    outputs: usize,
    done: Receiver<()>,
}

impl Drain {
    /// Waits until every output stream reached its end, at most TIMEOUT
    /// (a process's child that keeps the pipe open must not hold the exit
    /// back for ever); whether all ended.
    pub fn wait(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.outputs > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(()) => self.outputs -= 1,
                Err(_) => return false,
            }
        }
        true
    }
}
