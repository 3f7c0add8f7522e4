//! `exec`: a new process in a running container. The runtime opens the
//! init's namespace files, forks a helper that it places in the container's
//! cgroups; the helper joins the namespaces (the pid one takes effect for
//! its children) and forks the process, which sets its user, capabilities
//! and limits and execs. The helper reports the process's pid and exits.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};

use super::error::{Error, Result};
use super::namespaces::{self, Plan};
use super::spec::{Process, Seccomp};
use super::state::{self, Container, Status};
use super::sync::Channel;
use super::{caps, console, proc, process, seccomp, validate};

#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// The container's own process, the template for `exec ID CMD...`.
pub fn template(root: &Path, id: &str) -> Result<Process> {
    let c = Container::load(root, id)?;
    Ok(c.spec()?.process.unwrap_or_default())
}

/// Starts P in container ID and returns its pid. Unless `opts.detach`, the
/// caller has been made a child subreaper and the process is its child, to
/// wait for.
/// Must be called from a single-threaded process, as `create`.
pub fn exec(root: &Path, id: &str, p: &Process, opts: &ExecOptions) -> Result<i32> {
    let c = Container::load(root, id)?;
    match c.status() {
        Status::Running => {}
        Status::Paused => {
            return Err(Error::WrongState(
                "cannot exec in a paused container".into(),
            ))
        }
        Status::Created => {
            return Err(Error::WrongState(
                "cannot exec in a created container".into(),
            ))
        }
        _ => {
            return Err(Error::WrongState(
                "cannot exec in a stopped container".into(),
            ))
        }
    }
    validate::check_process(p)?;
    if p.terminal != opts.console_socket.is_some() {
        return Err(Error::invalid(
            "process.terminal",
            "a terminal needs --console-socket, and --console-socket needs a terminal",
        ));
    }
    let spec = c.spec()?;
    let plan = Plan::from_spec(&spec.linux.clone().unwrap_or_default().namespaces)?;
    // Open every namespace first: joining the mount one hides /proc/PID.
    let order = ["user", "ipc", "uts", "network", "pid", "cgroup", "mount"];
    let mut ns: Vec<(String, File)> = Vec::new();
    for kind in order.iter().filter(|k| plan.has(k)) {
        let path = format!("/proc/{}/ns/{}", c.saved.pid, namespaces::proc_name(kind));
        let f = File::open(&path).map_err(|e| Error::io("open namespace", &path, e))?;
        ns.push((kind.to_string(), f));
    }
    let console = opts
        .console_socket
        .as_deref()
        .map(console::connect)
        .transpose()?;
    if !opts.detach {
        // The process is the helper's child: adopt it when the helper exits.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| Error::sys("prctl PR_SET_CHILD_SUBREAPER", e))?;
    }
    let (mut parent, mut child) = Channel::pair()?;
    proc::check_single_threaded("exec")?;
    // SAFETY: checked just above: this process is single-threaded; the child only runs this
    // crate's code before it execs or exits.
    let helper = match unsafe { fork() }.map_err(|e| Error::sys("fork the exec helper", e))? {
        ForkResult::Child => {
            drop(parent);
            let filter = spec.linux.as_ref().and_then(|l| l.seccomp.as_ref());
            let code = match helper_main(
                &mut child,
                &ns,
                p,
                console.as_ref(),
                opts.preserve_fds,
                filter,
            ) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child.send(&format!("error {e}"));
                    1
                }
            };
            std::process::exit(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(child);
    drop(console);
    c.saved.cgroup.add(helper.as_raw())?;
    parent.send("go")?;
    let msg = parent.expect("pid");
    let _ = waitpid(helper, None);
    let pid: i32 = msg?
        .trim_start_matches("pid ")
        .parse()
        .map_err(|_| Error::Init("exec helper sent a bad pid".into()))?;
    // End of stream: the process exec'd (the channel is close-on-exec).
    if let Some(m) = parent.recv()? {
        let m = m.strip_prefix("error ").unwrap_or(&m).to_string();
        return Err(Error::Init(m));
    }
    if let Some(f) = &opts.pid_file {
        state::write_atomic(f, pid.to_string().as_bytes())?;
    }
    Ok(pid)
}

fn helper_main(
    ch: &mut Channel,
    ns: &[(String, File)],
    p: &Process,
    console: Option<&UnixStream>,
    preserve_fds: u32,
    filter: Option<&Seccomp>,
) -> Result<()> {
    ch.expect("go")?;
    for (kind, f) in ns {
        let flag = namespaces::flag(kind).unwrap_or(CloneFlags::empty());
        setns(f.as_fd(), flag).map_err(|e| Error::sys(format!("setns {kind}"), e))?;
    }
    // SAFETY: single-threaded (the runtime's fork child); the grandchild
    // execs or exits.
    match unsafe { fork() }.map_err(|e| Error::sys("fork the exec process", e))? {
        ForkResult::Child => {
            let err = match setup_and_exec(p, console, preserve_fds, filter) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = ch.send(&format!("error {err}"));
            std::process::exit(127);
        }
        ForkResult::Parent { child } => ch.send(&format!("pid {child}")),
    }
}

fn setup_and_exec(
    p: &Process,
    console: Option<&UnixStream>,
    preserve_fds: u32,
    filter: Option<&Seccomp>,
) -> Result<std::convert::Infallible> {
    nix::unistd::setsid().map_err(|e| Error::sys("setsid", e))?;
    if let Some(sock) = console {
        console::setup(sock, p.console_size)?;
    }
    if let Some(adj) = p.oom_score_adj {
        process::set_oom_score_adj(adj)?;
    }
    process::set_rlimits(&p.rlimits)?;
    nix::unistd::chdir(p.cwd.as_str())
        .map_err(|e| Error::sys(format!("process.cwd: chdir {}", p.cwd), e))?;
    let sets = p.capabilities.as_ref().map(caps::parse).transpose()?;
    if let Some(f) = filter.filter(|_| !p.no_new_privileges) {
        seccomp::load(f)?;
    }
    if let Some(s) = &sets {
        caps::drop_bounding(s)?;
    }
    process::set_user(&p.user)?;
    if let Some(s) = &sets {
        caps::apply(s)?;
    }
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| Error::sys("prctl PR_SET_NO_NEW_PRIVS", e))?;
    }
    let exe = process::find_executable(p)?;
    if let Some(f) = filter.filter(|_| p.no_new_privileges) {
        seccomp::load(f)?;
    }
    process::cloexec_from(3 + preserve_fds);
    process::exec(&exe, p)
}
