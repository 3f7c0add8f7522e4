//! The runc-compatible verbs of the command line: arguments and how each
//! drives the library (`snaprun_runtime::oci`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use snaprun_runtime::oci::{
    self, create::CreateOptions, exec::ExecOptions, spec::Process, state::Container,
};

#[derive(Args)]
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid to this file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// A unix socket to send the pty master to (process.terminal).
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Move the rootfs over / and chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility; the session keyring is left alone.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Extra fds (from 3 on) passed to the container.
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            preserve_fds: self.preserve_fds,
            restore: None,
        }
    }
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container started (do not wait for it).
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits (no delete).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args)]
pub struct ExecArgs {
    /// A runtime-spec process JSON file (its args, env, cwd, user...).
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Allocate a pty (needs --console-socket).
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<String>,
    /// NAME=VALUE added to the environment.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    #[arg(long)]
    pub no_new_privs: bool,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
    /// The command and its arguments (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// runc's CRIU flags for `checkpoint ID` / `restore ID`: accepted so that
/// containerd's calls parse (`container_cmd.rs` says which have an effect);
/// refused with the process form (`--pid`, or restore without ID).
#[derive(Args, Default)]
pub struct RuncCriuArgs {
    /// Scratch dir for the checkpoint's logs.
    #[arg(long)]
    pub work_path: Option<PathBuf>,
    #[arg(long)]
    pub tcp_established: bool,
    #[arg(long)]
    pub ext_unix_sk: bool,
    #[arg(long)]
    pub shell_job: bool,
    #[arg(long)]
    pub file_locks: bool,
    #[arg(long)]
    pub manage_cgroups_mode: Option<String>,
    #[arg(long)]
    pub empty_ns: Vec<String>,
    #[arg(long)]
    pub auto_dedup: bool,
    #[arg(long)]
    pub lazy_pages: bool,
    #[arg(long)]
    pub parent_path: Option<PathBuf>,
    #[arg(long)]
    pub pre_dump: bool,
    #[arg(long)]
    pub page_server: Option<String>,
    #[arg(long)]
    pub status_fd: Option<i32>,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    #[arg(long)]
    pub no_pivot: bool,
    #[arg(long)]
    pub no_subreaper: bool,
}

impl RuncCriuArgs {
    /// The first container-only flag given, if any.
    pub fn given(&self) -> Option<&'static str> {
        let flags = [
            (self.work_path.is_some(), "--work-path"),
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
            (self.manage_cgroups_mode.is_some(), "--manage-cgroups-mode"),
            (!self.empty_ns.is_empty(), "--empty-ns"),
            (self.auto_dedup, "--auto-dedup"),
            (self.lazy_pages, "--lazy-pages"),
            (self.parent_path.is_some(), "--parent-path"),
            (self.pre_dump, "--pre-dump"),
            (self.page_server.is_some(), "--page-server"),
            (self.status_fd.is_some(), "--status-fd"),
            (self.console_socket.is_some(), "--console-socket"),
            (self.no_pivot, "--no-pivot"),
            (self.no_subreaper, "--no-subreaper"),
        ];
        flags.iter().find(|(set, _)| *set).map(|(_, name)| *name)
    }
}

#[derive(Args)]
pub struct UpdateArgs {
    /// A runtime-spec `linux.resources` JSON file, `-` for stdin.
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory reservation (soft limit) in bytes.
    #[arg(long)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit in bytes.
    #[arg(long)]
    pub memory_swap: Option<i64>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

pub fn update(root: &Path, a: &UpdateArgs) -> anyhow::Result<()> {
    use oci::spec::{Cpu, Memory, Pids, Resources};
    let mut res: Resources = match a.resources.as_deref() {
        Some(p) if p == Path::new("-") => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).context("read stdin")?;
            oci::spec::parse(&buf, Path::new("(stdin)"))?
        }
        Some(p) => {
            let buf = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            oci::spec::parse(&buf, p)?
        }
        None => Resources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let m = res.memory.get_or_insert_with(Memory::default);
        m.limit = a.memory.or(m.limit);
        m.reservation = a.memory_reservation.or(m.reservation);
        m.swap = a.memory_swap.or(m.swap);
    }
    let cpu_flags = a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some();
    if cpu_flags {
        let c = res.cpu.get_or_insert_with(Cpu::default);
        c.shares = a.cpu_shares.or(c.shares);
        c.quota = a.cpu_quota.or(c.quota);
        c.period = a.cpu_period.or(c.period);
        c.cpus = a.cpuset_cpus.clone().or(c.cpus.take());
        c.mems = a.cpuset_mems.clone().or(c.mems.take());
    }
    if let Some(limit) = a.pids_limit {
        res.pids = Some(Pids { limit });
    }
    oci::update::update(root, &a.id, &res)?;
    Ok(())
}

pub fn create(root: &Path, a: &CreateArgs) -> anyhow::Result<()> {
    oci::create::create(root, &a.id, &a.options())?;
    Ok(())
}

/// Waits for PID (our child), forwarding signals to it; its exit code.
pub(crate) fn wait_forwarding(pid: i32) -> anyhow::Result<i32> {
    let set = oci::relay::forwarded_signals();
    set.thread_block().context("block signals")?;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) => {}
            Err(e) => bail!("wait for pid {pid}: {e}"),
        }
        let sig = set.wait().context("wait for a signal")?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

pub fn run(root: &Path, a: &RunArgs) -> anyhow::Result<i32> {
    let mut opts = a.create.options();
    // A terminal and nobody to hand it to: relay it ourselves, as runc does.
    let terminal = oci::spec::load(&opts.bundle.canonicalize().unwrap_or(opts.bundle.clone()))
        .ok()
        .and_then(|s| s.process.map(|p| p.terminal))
        .unwrap_or(false);
    let own_tty = terminal && opts.console_socket.is_none();
    if own_tty && a.detach {
        bail!("process.terminal: --detach with a terminal needs --console-socket");
    }
    let listener = if own_tty {
        let (path, l) = console_listener(root, &a.create.id)?;
        opts.console_socket = Some(path);
        Some(l)
    } else {
        None
    };
    let created = oci::create::create(root, &a.create.id, &opts);
    if let Some(p) = opts.console_socket.as_ref().filter(|_| own_tty) {
        let _ = std::fs::remove_file(p);
    }
    let created = created?;
    // The init sent the master while create waited: it is queued on the socket.
    let master = listener.as_ref().map(oci::relay::recv_master).transpose();
    let master = match master {
        Ok(m) => m,
        Err(e) => {
            let _ = oci::delete::delete(root, &a.create.id, true);
            return Err(e.into());
        }
    };
    if let Err(e) = oci::start::start(root, &a.create.id) {
        let _ = oci::delete::delete(root, &a.create.id, true);
        return Err(e.into());
    }
    if a.detach {
        return Ok(0);
    }
    let code = match master {
        Some(m) => oci::relay::relay(m, created.pid)?,
        None => wait_forwarding(created.pid)?,
    };
    if !a.keep {
        let c = Container::load(root, &a.create.id)?;
        oci::delete::kill_all(&c)?;
        oci::delete::destroy(&c)?;
    }
    Ok(code)
}

pub fn state(root: &Path, id: &str) -> anyhow::Result<()> {
    let c = Container::load(root, id)?;
    println!("{}", serde_json::to_string_pretty(&c.oci_state())?);
    Ok(())
}

pub fn list(root: &Path, format: ListFormat, quiet: bool) -> anyhow::Result<()> {
    let all = oci::state::list(root)?;
    if quiet {
        for c in &all {
            println!("{}", c.id());
        }
        return Ok(());
    }
    let states: Vec<_> = all.iter().map(Container::oci_state).collect();
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&states)?),
        ListFormat::Table => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            let widths: Vec<usize> = (0..6)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in rows {
                let cells: Vec<String> = r
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                    .collect();
                println!("{}", cells.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

pub fn ps(root: &Path, id: &str, format: ListFormat) -> anyhow::Result<()> {
    let pids = oci::ps::pids(root, id)?;
    match format {
        ListFormat::Json => println!("{}", serde_json::to_string(&pids)?),
        ListFormat::Table => print!("{}", oci::ps::table(&pids)),
    }
    Ok(())
}

pub fn spec(bundle: &Path) -> anyhow::Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&oci::spec::default_spec())?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

fn parse_user(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u
        .parse()
        .with_context(|| format!("--user {s:?}: uid must be a number"))?;
    let gid = g
        .map(|g| {
            g.parse()
                .with_context(|| format!("--user {s:?}: gid must be a number"))
        })
        .transpose()?;
    Ok((uid, gid))
}

pub fn exec(root: &Path, a: &ExecArgs) -> anyhow::Result<i32> {
    let p: Process = match &a.process {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            oci::spec::parse(&bytes, path)?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command (or --process)");
            }
            let mut p = oci::exec::template(root, &a.id)?;
            p.args = a.command.clone();
            p.terminal = a.tty;
            p.env.extend(a.env.iter().cloned());
            if let Some(cwd) = &a.cwd {
                p.cwd = cwd.clone();
            }
            if let Some(u) = &a.user {
                let (uid, gid) = parse_user(u)?;
                p.user.uid = uid;
                p.user.gid = gid.unwrap_or(p.user.gid);
            }
            if !a.additional_gids.is_empty() {
                p.user.additional_gids = a.additional_gids.clone();
            }
            p.no_new_privileges |= a.no_new_privs;
            p
        }
    };
    let mut opts = ExecOptions {
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
    };
    let own_tty = p.terminal && opts.console_socket.is_none();
    if own_tty && a.detach {
        bail!("process.terminal: --detach with a terminal needs --console-socket");
    }
    let listener = if own_tty {
        let (path, l) = console_listener(root, &format!("{}-exec-{}", a.id, std::process::id()))?;
        opts.console_socket = Some(path);
        Some(l)
    } else {
        None
    };
    // Blocked before the process exists, so that a signal sent as soon as
    // it runs is forwarded, not taken by us (the process resets its mask
    // before its program starts).
    if !a.detach && listener.is_none() {
        oci::relay::forwarded_signals()
            .thread_block()
            .context("block signals")?;
    }
    let pid = oci::exec::exec(root, &a.id, &p, &opts);
    if let Some(path) = opts.console_socket.as_ref().filter(|_| own_tty) {
        let _ = std::fs::remove_file(path);
    }
    let pid = pid?;
    if a.detach {
        return Ok(0);
    }
    match listener {
        Some(l) => Ok(oci::relay::relay(oci::relay::recv_master(&l)?, pid)?),
        None => wait_forwarding(pid),
    }
}

/// A listening socket in the state root for a pty master this process
/// relays itself.
fn console_listener(
    root: &Path,
    name: &str,
) -> anyhow::Result<(PathBuf, std::os::unix::net::UnixListener)> {
    std::fs::create_dir_all(root).with_context(|| format!("create {}", root.display()))?;
    let path = root.join(format!(".console-{name}.sock"));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("bind {}", path.display()))?;
    Ok((path, l))
}
