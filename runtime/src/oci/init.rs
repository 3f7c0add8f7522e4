//! The container's init, between clone and exec: joins and makes the
//! remaining namespaces, builds the root filesystem, sets the process's
//! attributes, reports `ready`, blocks on exec.fifo until `start`, and execs
//! the container's program. Any error goes back to the runtime as `error MSG`.

use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::{setresgid, setresuid, Gid, Uid};

use super::cgroups::Cgroup;
use super::error::{Error, Result};
use super::namespaces::Plan;
use super::restore::RestoreInit;
use super::spec::Spec;
use super::state::{OciState, Status};
use super::sync::Channel;
use super::{caps, console, hooks, mounts, namespaces, process, rootfs, seccomp, spec};

pub struct Context<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub plan: &'a Plan,
    pub cgroup: &'a Cgroup,
    /// exec.fifo, opened O_PATH by the runtime.
    pub fifo: RawFd,
    pub channel: Channel,
    pub console: Option<UnixStream>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub id: &'a str,
    /// A container restore: become the engine's stub (`restore.rs`).
    pub restore: Option<&'a RestoreInit>,
}

/// Runs the init; never returns.
pub fn run(mut ctx: Context) -> ! {
    match setup(&mut ctx) {
        Ok(never) => match never {},
        Err(e) => {
            // Before `ready` the runtime reports it; after, only stderr can.
            if ctx.channel.send(&format!("error {e}")).is_err() {
                eprintln!("snaprun init: {e}");
            }
            std::process::exit(127);
        }
    }
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> Error {
    move |e| Error::sys(what, e)
}

fn setup(ctx: &mut Context) -> Result<std::convert::Infallible> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(sys("prctl PR_SET_PDEATHSIG"))?;
    let go = ctx.channel.expect("go")?;
    let host_pid: i32 = go.trim_start_matches("go ").parse().unwrap_or(0);
    let spec = ctx.spec;
    let p = spec.process.clone().unwrap_or_default();
    let linux = spec.linux.clone().unwrap_or_default();

    if ctx.plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .map_err(sys("become gid 0 in the user namespace"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .map_err(sys("become uid 0 in the user namespace"))?;
    }
    // The user namespace first (it owns the others), the mount one last.
    let mut joins = ctx.plan.join.clone();
    joins.retain(|(k, _)| k != "pid");
    joins.sort_by_key(|(k, _)| match k.as_str() {
        "user" => 0,
        "mount" => 2,
        _ => 1,
    });
    for (kind, path) in &joins {
        namespaces::join(kind, path)?;
    }
    if ctx.plan.new.contains(CloneFlags::CLONE_NEWCGROUP) {
        unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare the cgroup namespace"))?;
    }
    nix::unistd::setsid().map_err(sys("setsid"))?;
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(sys("hostname: sethostname"))?;
    }
    if let Some(d) = spec.domainname.as_deref().filter(|d| !d.is_empty()) {
        set_domainname(d)?;
    }

    let in_userns = ctx.plan.has("user");
    rootfs::prepare(spec, ctx.rootfs)?;
    for (i, m) in spec.mounts.iter().enumerate() {
        mounts::mount_entry(i, m, ctx.rootfs, ctx.bundle, ctx.cgroup)?;
    }
    let state = OciState {
        oci_version: spec::OCI_VERSION.into(),
        id: ctx.id.to_string(),
        status: Status::Creating,
        pid: host_pid,
        bundle: ctx.bundle.to_path_buf(),
        rootfs: ctx.rootfs.to_path_buf(),
        created: String::new(),
        owner: String::new(),
        annotations: spec.annotations.clone(),
    };
    if let Some(h) = &spec.hooks {
        if !h.prestart.is_empty() || !h.create_runtime.is_empty() {
            ctx.channel.send("hooks")?;
            ctx.channel.expect("ok")?;
        }
        hooks::run_all("createContainer", &h.create_container, &state)?;
    }
    let dev_is_bind = spec
        .mounts
        .iter()
        .any(|m| m.destination == "/dev" && m.options.iter().any(|o| o == "bind" || o == "rbind"));
    if !dev_is_bind {
        rootfs::create_devices(spec, ctx.rootfs, in_userns)?;
    }
    if ctx.no_pivot {
        rootfs::move_root(ctx.rootfs)?;
    } else {
        rootfs::pivot(ctx.rootfs)?;
    }
    rootfs::sysctls(spec)?;
    rootfs::mask_paths(&linux.masked_paths)?;
    rootfs::readonly_paths(&linux.readonly_paths)?;
    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        rootfs::readonly_root()?;
    }
    if let Some(r) = ctx.restore {
        return super::restore::init_stub(spec, &mut ctx.channel, r);
    }

    if let Some(sock) = ctx.console.take() {
        console::setup(&sock, p.console_size)?;
    }
    if let Some(adj) = p.oom_score_adj {
        process::set_oom_score_adj(adj)?;
    }
    process::set_rlimits(&p.rlimits)?;
    nix::unistd::chdir(p.cwd.as_str())
        .map_err(|e| Error::sys(format!("process.cwd: chdir {}", p.cwd), e))?;
    let sets = p.capabilities.as_ref().map(caps::parse).transpose()?;
    // Without no_new_privs the filter needs CAP_SYS_ADMIN: load it now.
    if let Some(s) = linux.seccomp.as_ref().filter(|_| !p.no_new_privileges) {
        seccomp::load(s)?;
    }
    if let Some(s) = &sets {
        caps::drop_bounding(s)?;
    }
    process::set_user(&p.user)?;
    if let Some(s) = &sets {
        caps::apply(s)?;
    }
    if p.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(sys("prctl PR_SET_NO_NEW_PRIVS"))?;
    }
    let exe = process::find_executable(&p)?;

    // The runtime may exit now: drop the death signal, then report.
    nix::sys::prctl::set_pdeathsig(None).map_err(sys("prctl PR_SET_PDEATHSIG"))?;
    ctx.channel.send("ready")?;
    wait_for_start(ctx.fifo)?;
    if let Some(h) = &spec.hooks {
        hooks::run_all("startContainer", &h.start_container, &state)?;
    }
    // With no_new_privs, as late as can be: only execve follows.
    if let Some(s) = linux.seccomp.as_ref().filter(|_| p.no_new_privileges) {
        seccomp::load(s)?;
    }
    process::cloexec_from(3 + ctx.preserve_fds);
    process::exec(&exe, &p)
}

/// Blocks until `start` opens exec.fifo for reading, then writes one byte.
fn wait_for_start(fifo_fd: std::os::fd::RawFd) -> Result<()> {
    let path = format!("/proc/self/fd/{fifo_fd}");
    let fd = open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("open exec.fifo for writing"))?;
    // SAFETY: `open` just returned FD, which nothing else owns.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    nix::unistd::write(&fd, b"0").map_err(sys("write exec.fifo"))?;
    drop(fd);
    let _ = nix::unistd::close(fifo_fd);
    Ok(())
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: NAME points to name.len() valid bytes for the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if rc != 0 {
        return Err(Error::sys("domainname: setdomainname", nix::Error::last()));
    }
    Ok(())
}
