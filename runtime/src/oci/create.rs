//! `create`: the runtime side. Checks the bundle, makes the state dir and
//! exec.fifo, clones the init into its new namespaces, writes its id maps,
//! places it in its cgroups, runs the createRuntime hooks when the init asks,
//! and records the state once the init waits on the fifo.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::cgroups::Cgroup;
use super::error::{Error, Result};
use super::restore::RestoreInit;
use super::state::{self, Container, OciState, Saved, Status};
use super::sync::Channel;
use super::{console, hooks, init, namespaces, proc, spec, validate};

#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// Extra fds (from 3 on) the container inherits.
    pub preserve_fds: u32,
    /// A container restore (`restore.rs`): the init becomes the engine's
    /// stub instead of waiting for `start` (no exec.fifo, no terminal).
    pub restore: Option<Arc<RestoreInit>>,
}

/// The created container.
pub struct Created {
    pub pid: i32,
    pub dir: PathBuf,
}

/// Clones a child with FLAGS that continues like fork's child (same stack,
/// copied). Returns 0 in the child. The child runs ordinary Rust code (it
/// allocates) until it execs, which is sound only when this process has a
/// single thread: no other thread can hold a lock the child would need.
fn clone_process(flags: CloneFlags) -> Result<i32> {
    proc::check_single_threaded("create")?;
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: a fork-style clone (no new stack, no shared memory or fds):
    // the child gets a private copy of this single-threaded process and
    // returns 0 here; no pointers are passed.
    let rc = unsafe { libc::syscall(libc::SYS_clone, raw, 0usize, 0usize, 0usize, 0usize) };
    if rc < 0 {
        return Err(Error::sys(
            format!("clone the container init with {flags:?}"),
            nix::Error::last(),
        ));
    }
    Ok(rc as i32)
}

/// Creates container ID from `opts.bundle` under ROOT. Must be called from a
/// single-threaded process (the init is a fork-style clone that runs Rust
/// code before it execs).
pub fn create(root: &Path, id: &str, opts: &CreateOptions) -> Result<Created> {
    state::check_id(id)?;
    let bundle = opts
        .bundle
        .canonicalize()
        .map_err(|e| Error::io("open the bundle", &opts.bundle, e))?;
    let spec = spec::load(&bundle)?;
    let checked = validate::check(&spec, &bundle)?;
    let process = spec.process.clone().unwrap_or_default();
    let restoring = opts.restore.is_some();
    // A restore gets its fds from the snapshot: no terminal is made.
    if process.terminal && opts.console_socket.is_none() && !restoring {
        return Err(Error::invalid(
            "process.terminal",
            "a terminal needs --console-socket (or terminal: false)",
        ));
    }
    if (!process.terminal || restoring) && opts.console_socket.is_some() {
        return Err(Error::invalid(
            "process.terminal",
            "--console-socket given but terminal is false",
        ));
    }

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Error::io("create the root dir", root, e))?;
    let dir = root.join(id);
    match fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(id.to_string()))
        }
        Err(e) => return Err(Error::io("create the state dir", &dir, e)),
    }
    let mut guard = Cleanup {
        dir: dir.clone(),
        cgroup: None,
        pid: 0,
    };
    fs::copy(bundle.join("config.json"), dir.join(state::CONFIG_COPY))
        .map_err(|e| Error::io("copy the config to", dir.join(state::CONFIG_COPY), e))?;
    // The stdio the init inherits from here, for a later checkpoint.
    super::checkpoint::record_stdio(&dir)?;
    let fifo = dir.join(state::FIFO);
    // A restored container is running at once: no exec.fifo.
    let fifo_fd = if restoring {
        None
    } else {
        Some(make_fifo(&fifo)?)
    };

    let linux = spec.linux.clone().unwrap_or_default();
    let cg_path = match linux.cgroups_path.as_deref() {
        Some(p) if !p.is_empty() => systemd_to_path(p),
        _ => format!("snaprun/{id}"),
    };
    let cgroup = Cgroup::resolve(&cg_path)?;
    cgroup.create()?;
    guard.cgroup = Some(cgroup.clone());

    let console: Option<UnixStream> = opts
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;
    let (mut parent, child) = Channel::pair()?;
    for (kind, path) in checked.plan.join.iter().filter(|(k, _)| k == "pid") {
        namespaces::join(kind, path)?;
    }
    // The cgroup namespace is made by the init after it is in its cgroups.
    let flags = checked.plan.new - CloneFlags::CLONE_NEWCGROUP;
    let pid = clone_process(flags)?;
    if pid == 0 {
        drop(parent);
        init::run(init::Context {
            spec: &spec,
            bundle: &bundle,
            rootfs: &checked.rootfs,
            plan: &checked.plan,
            cgroup: &cgroup,
            fifo: fifo_fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
            channel: child,
            console,
            no_pivot: opts.no_pivot,
            preserve_fds: opts.preserve_fds,
            id,
            restore: opts.restore.as_deref(),
        });
    }
    drop(child);
    drop(console);
    drop(fifo_fd);
    guard.pid = pid;
    if checked.plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        namespaces::write_id_maps(pid, &linux.uid_mappings, &linux.gid_mappings)?;
    }
    cgroup.add(pid)?;
    if let Some(res) = &linux.resources {
        cgroup.apply(res)?;
    }
    let start_time = proc::start_time(pid)
        .ok_or_else(|| Error::Init(format!("init pid {pid} vanished during setup")))?;
    let saved = Saved {
        id: id.to_string(),
        pid,
        start_time,
        bundle: bundle.clone(),
        rootfs: checked.rootfs.clone(),
        created: state::rfc3339_now(),
        owner: String::new(),
        annotations: spec.annotations.clone(),
        cgroup: cgroup.clone(),
    };
    parent.send(&format!("go {pid}"))?;
    loop {
        let msg = parent.recv()?;
        match msg.as_deref() {
            Some("hooks") => {
                let st = creating_state(&saved);
                if let Some(h) = &spec.hooks {
                    hooks::run_all("prestart", &h.prestart, &st)?;
                    hooks::run_all("createRuntime", &h.create_runtime, &st)?;
                }
                parent.send("ok")?;
            }
            Some("ready") if !restoring => break,
            // The init is the restore stub now, stopping itself.
            Some("stub") if restoring => break,
            Some(m) => {
                let m = m.strip_prefix("error ").unwrap_or(m);
                return Err(Error::Init(m.to_string()));
            }
            None => return Err(Error::Init(format!("init pid {pid} exited during setup"))),
        }
    }
    Container::save(&dir, &saved)?;
    if let Some(f) = &opts.pid_file {
        state::write_atomic(f, pid.to_string().as_bytes())?;
    }
    guard.disarm();
    tracing::debug!(id, pid, "container created");
    Ok(Created { pid, dir })
}

/// Makes exec.fifo (0622) and opens it `O_PATH`, here: a user namespace's
/// root may not reach the state dir.
fn make_fifo(fifo: &Path) -> Result<OwnedFd> {
    nix::unistd::mkfifo(fifo, Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::sys(format!("mkfifo {}", fifo.display()), e))?;
    // mkfifo applies the umask; the init may run as any user.
    nix::sys::stat::fchmodat(
        None,
        fifo,
        Mode::from_bits_truncate(0o622),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| Error::sys(format!("chmod {}", fifo.display()), e))?;
    let fd = nix::fcntl::open(fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys(format!("open {}", fifo.display()), e))?;
    // SAFETY: `open` just returned this fd, which nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The state hooks see before the container is recorded.
pub fn creating_state(saved: &Saved) -> OciState {
    OciState {
        oci_version: spec::OCI_VERSION.into(),
        id: saved.id.clone(),
        status: Status::Creating,
        pid: saved.pid,
        bundle: saved.bundle.clone(),
        rootfs: saved.rootfs.clone(),
        created: saved.created.clone(),
        owner: saved.owner.clone(),
        annotations: saved.annotations.clone(),
    }
}

/// A systemd-style `slice:prefix:name` path becomes `slice/prefix-name`
/// (snaprun drives cgroupfs itself; `--systemd-cgroup` changes nothing else).
fn systemd_to_path(p: &str) -> String {
    let parts: Vec<&str> = p.split(':').collect();
    if parts.len() == 3 && !p.starts_with('/') {
        format!("/{}/{}-{}", parts[0], parts[1], parts[2])
    } else {
        p.to_string()
    }
}

/// Undoes a failed create: kills the init, removes the cgroups and the dir.
struct Cleanup {
    dir: PathBuf,
    cgroup: Option<Cgroup>,
    pid: i32,
}

impl Cleanup {
    fn disarm(&mut self) {
        self.dir = PathBuf::new();
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        if self.pid > 0 {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.remove();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}
