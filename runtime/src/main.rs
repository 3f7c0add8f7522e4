//! `snaprun`: checkpoint and restore processes; an OCI runtime with runc's
//! command line (docs/oci.md).

mod bench;
mod bench_cold_start;
mod container_cmd;
mod gpu_cmd;
mod inspect;
mod logging;
mod oci_cli;
mod snapshot_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use snaprun_runtime::oci;
use snaprun_snapshot::image::{Image, ImageOptions, ImageTarget};
use snaprun_snapshot::{dump, pager, restore};
use snaprun_store::{store_dir, RefName, Store};

#[derive(Parser)]
#[command(
    name = "snaprun",
    version,
    about = "Checkpoint and restore processes, warm; an OCI runtime"
)]
struct Cli {
    /// Log filter (e.g. `debug`, `snaprun_snapshot=trace`); also SNAPRUN_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Where container state lives (runc's --root).
    #[arg(long, global = true, default_value = "/run/snaprun")]
    root: PathBuf,
    /// Write logs to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Format of the log lines.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: logging::Format,
    /// Debug-level logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for runc compatibility: snaprun manages cgroupfs itself and
    /// turns a `slice:prefix:name` cgroupsPath into a plain path.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where a checkpoint goes: an image directory or a named snapshot.
#[derive(clap::Args)]
#[group(required = false, multiple = false)]
struct CheckpointTarget {
    /// Directory to write the snapshot into (created if missing).
    #[arg(long)]
    image_path: Option<PathBuf>,
    /// Name the snapshot NAME:TAG in the store.
    #[arg(long, value_name = "NAME:TAG")]
    to: Option<RefName>,
}

/// Where a restore comes from: an image directory or a named snapshot.
#[derive(clap::Args)]
#[group(required = false, multiple = false)]
struct RestoreSource {
    /// Directory holding the snapshot.
    #[arg(long)]
    image_path: Option<PathBuf>,
    /// The named snapshot NAME:TAG in the store.
    #[arg(long, value_name = "NAME:TAG")]
    from: Option<RefName>,
}

/// `restore --lazy` and its knobs (docs/pager.md).
#[derive(clap::Args)]
struct LazyArgs {
    /// Load private anonymous memory lazily: a pager (`snaprun pager`, a
    /// detached process) serves pages as the process touches them, pushes
    /// the snapshot's recorded working set before the resume and streams
    /// the rest after.
    #[arg(long)]
    lazy: bool,
    /// The pager's log (default: ROOT/pager/PID.log, PID the snapshot's).
    #[arg(long, value_name = "FILE", requires = "lazy")]
    pager_log: Option<PathBuf>,
    /// Write the pager's figures (JSON) to this file.
    #[arg(long, value_name = "FILE", requires = "lazy")]
    pager_stats: Option<PathBuf>,
    /// Neither push nor record a working set.
    #[arg(long, requires = "lazy")]
    no_working_set: bool,
    /// How long the working-set recording window stays open after the
    /// resume, in milliseconds (a SIGUSR1 to the pager closes it earlier).
    #[arg(long, value_name = "MS", default_value_t = 2000, requires = "lazy")]
    ws_window: u64,
}

impl LazyArgs {
    /// The pager's options for a restore of SOURCE, the log by default
    /// `ROOT/pager/NAME.log`; `None` without `--lazy`.
    fn options(
        self,
        source: impl FnOnce() -> pager::Source,
        root: &std::path::Path,
        name: &str,
    ) -> anyhow::Result<Option<pager::LazyOptions>> {
        if !self.lazy {
            return Ok(None);
        }
        let log = self
            .pager_log
            .unwrap_or_else(|| root.join("pager").join(format!("{name}.log")));
        let exe = std::env::current_exe().context("finding the snaprun binary")?;
        let mut o = pager::LazyOptions::new(source(), exe, log);
        o.stats = self.pager_stats;
        o.working_set = !self.no_working_set;
        o.window = std::time::Duration::from_millis(self.ws_window);
        Ok(Some(o))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process (--pid, with its descendants), or a
    /// container (by ID), into an image directory or the store.
    Checkpoint {
        /// The process to checkpoint.
        #[arg(long)]
        pid: Option<i32>,
        #[command(flatten)]
        target: CheckpointTarget,
        /// The store directory (default: $SNAPRUN_STORE, else /var/lib/snaprun).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Store chunks uncompressed (faster checkpoint, larger store).
        #[arg(long)]
        no_compress: bool,
        /// Resume the process afterwards instead of ending it.
        #[arg(long)]
        leave_running: bool,
        /// Restore open TCP connections as closed (reset) instead of
        /// refusing to checkpoint them.
        #[arg(long)]
        tcp_close: bool,
        /// Seconds the CUDA driver's lock of a CUDA process may wait for
        /// its GPU work (default 30).
        #[arg(long, value_name = "SECS")]
        gpu_lock_timeout: Option<f64>,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
        #[command(flatten)]
        runc: oci_cli::RuncCriuArgs,
        /// A container to checkpoint (its image defaults to ./checkpoint).
        id: Option<String>,
    },
    /// Restore a process (tree) from an image directory or the store and
    /// print its pid; or a container (by ID, with --bundle).
    Restore {
        #[command(flatten)]
        source: RestoreSource,
        /// The store directory (default: $SNAPRUN_STORE, else /var/lib/snaprun).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// A remote tier (s3://bucket/prefix, file:///dir) that chunks and
        /// names missing from the store are read from (and filled into it).
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// Write the restored process's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Restore into a new PID namespace (the default does so only when
        /// the snapshot's pid or a thread id is in use on the host).
        #[arg(long)]
        new_pidns: bool,
        /// Restore CUDA processes onto other GPUs: OLD=NEW, two GPU UUIDs
        /// (nvidia-smi -L); repeat, or separate with commas.
        #[arg(long, value_name = "OLD=NEW", value_delimiter = ',')]
        gpu_map: Vec<cuda_ckpt::GpuPair>,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
        #[command(flatten)]
        lazy: LazyArgs,
        /// The bundle of the container to restore into (with ID).
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// Return once the container is restored (with ID).
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        runc: oci_cli::RuncCriuArgs,
        /// A container to restore, created from --bundle.
        id: Option<String>,
    },
    /// The pager of a lazy restore (started by `restore --lazy`, which
    /// hands it its control channel as fd 3).
    #[command(hide = true)]
    Pager,
    /// Work with snapshots.
    Snapshot {
        #[command(subcommand)]
        command: snapshot_cmd::SnapshotCommand,
    },
    /// A CUDA process's GPU state, without a CPU dump: suspend (GPU memory
    /// to host memory, GPU freed), resume, state.
    Gpu {
        #[command(subcommand)]
        command: gpu_cmd::GpuCommand,
    },
    /// Measure things.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
    /// Create a container from a bundle; its init waits for `start`.
    Create(oci_cli::CreateArgs),
    /// Start a created container's program.
    Start { id: String },
    /// Create and start a container; in the foreground, exit with its code.
    Run(oci_cli::RunArgs),
    /// Print a container's state (runtime-spec JSON).
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or to all its
    /// processes.
    Kill {
        /// Every process of the container, not only its init.
        #[arg(short, long)]
        all: bool,
        id: String,
        /// A name (KILL, SIGKILL) or a number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a stopped (or, with --force, any) container.
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List the containers.
    List {
        #[arg(short, long, value_enum, default_value = "table")]
        format: oci_cli::ListFormat,
        /// Only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// The processes of a container.
    Ps {
        #[arg(short, long, value_enum, default_value = "table")]
        format: oci_cli::ListFormat,
        id: String,
        /// `ps` options (accepted for runc compatibility, ignored).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process in a running container.
    Exec(oci_cli::ExecArgs),
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a container's resource limits.
    Update(oci_cli::UpdateArgs),
    /// What this runtime implements (JSON).
    Features,
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Accepted for runc compatibility (no rootless spec yet).
        #[arg(long)]
        rootless: bool,
    },
}

/// What the command ends with: success, or the exit code of a container
/// process (`run`, `exec`).
fn run(cli: Cli) -> anyhow::Result<u8> {
    let root = cli.root.as_path();
    match cli.command {
        Command::Checkpoint {
            pid,
            target,
            store,
            no_compress,
            leave_running,
            tcp_close,
            gpu_lock_timeout,
            timings,
            runc,
            id,
        } => {
            if let Some(id) = id {
                if pid.is_some() {
                    bail!("checkpoint takes --pid or a container ID, not both");
                }
                let a = container_cmd::CheckpointArgs {
                    image_path: target.image_path,
                    to: target.to,
                    store,
                    no_compress,
                    leave_running,
                    tcp_close,
                    timings,
                };
                container_cmd::checkpoint(root, &id, a, &runc)?;
                return Ok(0);
            }
            if let Some(flag) = runc.given() {
                bail!("{flag} applies to a container checkpoint (ID), not to --pid");
            }
            let target = match (target.image_path, target.to) {
                (Some(dir), _) => ImageTarget::Dir(dir),
                (None, Some(name)) => ImageTarget::Store {
                    dir: store_dir(store.as_deref()),
                    name,
                },
                (None, None) => {
                    bail!("checkpoint needs --image-path DIR or --to NAME:TAG (or a container ID)")
                }
            };
            let Some(pid) = pid else {
                bail!("checkpoint needs --pid (or a container ID)");
            };
            let mut image = ImageOptions::default();
            if no_compress {
                image.level = 0;
            }
            let cuda_lock_timeout = gpu_lock_timeout
                .map(std::time::Duration::try_from_secs_f64)
                .transpose()
                .context("--gpu-lock-timeout")?;
            let opts = dump::CheckpointOptions {
                leave_running,
                tcp_close,
                image,
                cuda_lock_timeout,
                ..Default::default()
            };
            let report = dump::checkpoint_to(pid, &target, &opts)
                .with_context(|| format!("checkpoint of pid {pid} to {}", target.describe()))?;
            if timings {
                let s = report.stored;
                eprintln!(
                    "checkpoint of pid {pid}: {} processes, {} threads, {} vmas, {} fds, {} bytes of pages; stored {} new bytes as {}, {} deduplicated, {} zero; root {}",
                    report.processes, report.threads, report.vmas, report.fds, report.pages_bytes, s.new_bytes, s.stored_bytes, s.dedup_bytes, s.zero_bytes, report.root
                );
                eprintln!("{}", report.timings);
            }
        }
        Command::Restore {
            source,
            store,
            remote,
            pid_file,
            new_pidns,
            gpu_map,
            timings,
            lazy,
            id,
            bundle,
            detach,
            runc,
        } => {
            if let Some(id) = id {
                if new_pidns {
                    bail!("--new-pidns applies to a process restore; a container gets the PID namespace of its bundle");
                }
                // The pager opens what the restore opens (the same
                // defaults: container_cmd's).
                let pager_source = || match (&source.image_path, &source.from) {
                    (Some(dir), _) => pager::Source::Dir { path: dir.clone() },
                    (None, Some(name)) => pager::Source::Store {
                        dir: store_dir(store.as_deref()),
                        name: name.to_string(),
                        remote: remote.clone(),
                    },
                    (None, None) => pager::Source::Dir {
                        path: PathBuf::from(container_cmd::DEFAULT_IMAGE_DIR),
                    },
                };
                let lazy = lazy.options(pager_source, root, &id)?;
                let a = container_cmd::RestoreArgs {
                    image_path: source.image_path,
                    from: source.from,
                    store,
                    remote,
                    bundle,
                    detach,
                    pid_file,
                    timings,
                    lazy,
                };
                return Ok(exit_code(container_cmd::restore(root, &id, a, &runc)?));
            }
            if let Some(flag) = runc
                .given()
                .or(bundle.is_some().then_some("--bundle"))
                .or(detach.then_some("--detach"))
            {
                bail!("{flag} applies to a container restore (ID)");
            }
            let (image, pager_source) = match (source.image_path, source.from) {
                (Some(dir), _) => (Image::open(&dir)?, pager::Source::Dir { path: dir }),
                (None, Some(name)) => {
                    let dir = store_dir(store.as_deref());
                    let mut st = Store::open(&dir)?;
                    if let Some(url) = &remote {
                        st.add_remote(snaprun_store::tier::open_remote(url)?);
                    }
                    let image = Image::open_named(Arc::new(st), &name)?;
                    let source = pager::Source::Store {
                        dir,
                        name: name.to_string(),
                        remote: remote.clone(),
                    };
                    (image, source)
                }
                (None, None) => {
                    bail!("restore needs --image-path DIR or --from NAME:TAG (or a container ID)")
                }
            };
            let pid = image.manifest.processes[0].pid;
            let lazy_opts = lazy.options(|| pager_source, root, &pid.to_string())?;
            let opts = restore::RestoreOptions {
                pid_ns: if new_pidns {
                    restore::pidns::PidNsMode::New
                } else {
                    restore::pidns::PidNsMode::Auto
                },
                gpu_map,
                lazy: lazy_opts,
                ..Default::default()
            };
            let report = restore::restore_from(image, &opts)?;
            if let Some(f) = pid_file {
                write_pid_file(&f, report.pid)
                    .with_context(|| format!("writing pid file {}", f.display()))?;
            }
            if timings {
                eprintln!(
                    "restore of pid {}: {} processes, {} bytes of pages",
                    report.pid, report.processes, report.pages_bytes
                );
                if let Some(pg) = &report.pager {
                    eprintln!(
                        "lazy: {} bytes served by the pager, {} bytes ({} chunks) of working set pushed before the resume",
                        pg.lazy_bytes, pg.pushed_bytes, pg.pushed_chunks
                    );
                }
                eprintln!("{}", report.timings);
            }
            if let Some(pg) = &report.pager {
                eprintln!(
                    "snaprun: lazy restore: pager pid {}, log {}",
                    pg.pid,
                    pg.log.display()
                );
            }
            if let Some(ns) = &report.pid_ns {
                let why = if ns.taken.is_empty() {
                    String::new()
                } else {
                    format!("ids {:?} are in use on the host; ", ns.taken)
                };
                eprintln!(
                    "snaprun: {why}restored in a new PID namespace (its init is pid {}): pid {} there, pid {} on the host",
                    ns.init_pid, ns.inner_pid, report.pid
                );
            }
            if !report.pid_kept {
                eprintln!(
                    "snaprun: warning: the original ids were in use; restored as pid {}",
                    report.pid
                );
            }
            println!("{}", report.pid);
        }
        Command::Pager => pager::serve::run(pager::client::CONTROL_FD)?,
        Command::Snapshot { command } => snapshot_cmd::run(command)?,
        Command::Gpu { command } => gpu_cmd::run(command)?,
        Command::Bench { command } => bench::run(command)?,
        Command::Create(a) => oci_cli::create(root, &a)?,
        Command::Start { id } => oci::start::start(root, &id)?,
        Command::Run(a) => return Ok(exit_code(oci_cli::run(root, &a)?)),
        Command::State { id } => oci_cli::state(root, &id)?,
        Command::Kill { all, id, signal } => {
            let sig = oci::signal::parse(&signal)?;
            oci::kill::kill(root, &id, sig, all)?;
        }
        Command::Delete { force, id } => oci::delete::delete(root, &id, force)?,
        Command::List { format, quiet } => oci_cli::list(root, format, quiet)?,
        Command::Ps { format, id, .. } => oci_cli::ps(root, &id, format)?,
        Command::Exec(a) => return Ok(exit_code(oci_cli::exec(root, &a)?)),
        Command::Pause { id } => oci::pause::pause(root, &id)?,
        Command::Resume { id } => oci::pause::resume(root, &id)?,
        Command::Update(a) => oci_cli::update(root, &a)?,
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&oci::features::features())?
            )
        }
        Command::Spec { bundle, .. } => oci_cli::spec(&bundle)?,
    }
    Ok(0)
}

fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(255)
}

/// The error and its causes, each cause left out when the message before
/// already says it (library errors name their cause in their own text).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

/// Writes the pid atomically (temp file and rename), as runc does.
fn write_pid_file(path: &std::path::Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Go-style single-dash long flags that containerd's runc client sends
/// (`restore ... -no-subreaper`), taken as their `--` form.
fn go_style_flags(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    const SINGLE_DASH: [&str; 3] = ["-no-subreaper", "-no-pivot", "-no-new-keyring"];
    args.map(|a| match a.to_str() {
        Some(s) if SINGLE_DASH.contains(&s) => format!("-{s}").into(),
        _ => a,
    })
    .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_flags(std::env::args_os()));
    if cli.systemd_cgroup {
        tracing::debug!("--systemd-cgroup: accepted, cgroupfs is used");
    }
    // The pager logs what it does (its log is a file of its own).
    let level = cli.log_level.clone().or_else(|| {
        matches!(cli.command, Command::Pager)
            .then(|| std::env::var("SNAPRUN_LOG").unwrap_or_else(|_| "info".into()))
    });
    let logger = logging::init(
        level.as_deref(),
        cli.debug,
        cli.log.as_deref(),
        cli.log_format,
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = error_chain(&e);
            logger.fatal(&msg);
            eprintln!("snaprun: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{error_chain, go_style_flags};

    #[test]
    fn containerds_single_dash_flags_are_long_flags() {
        let args = [
            "snaprun",
            "restore",
            "-no-subreaper",
            "-d",
            "--bundle",
            "b",
            "id",
        ];
        let out = go_style_flags(args.iter().map(std::ffi::OsString::from));
        assert_eq!(out[2], "--no-subreaper");
        assert_eq!(out[3], "-d");
        assert_eq!(out.len(), args.len());
    }

    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        let inner = anyhow::Error::new(io).context(format!(
            "bind failed in the target: {}",
            std::io::Error::from_raw_os_error(libc::EADDRINUSE)
        ));
        let e = inner.context("restoring pid 7");
        let text = error_chain(&e);
        assert_eq!(text.matches("Address already in use").count(), 1, "{text}");
        assert!(text.starts_with("restoring pid 7: bind failed"), "{text}");
    }
}
