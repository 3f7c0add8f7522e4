//! `snaprun`: checkpoint and restore processes; an OCI runtime with runc's
//! command line (docs/oci.md).

mod inspect;
mod logging;
mod oci_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use snaprun_runtime::oci;
use snaprun_snapshot::{dump, restore};

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

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process (--pid) into an image directory; a
    /// container (by ID) is not implemented yet.
    Checkpoint {
        /// The process to checkpoint.
        #[arg(long)]
        pid: Option<i32>,
        /// Directory to write the snapshot into (created if missing).
        #[arg(long)]
        image_path: Option<PathBuf>,
        /// Resume the process afterwards instead of ending it.
        #[arg(long)]
        leave_running: bool,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
        #[command(flatten)]
        runc: oci_cli::RuncCriuArgs,
        /// A container to checkpoint (not implemented yet).
        id: Option<String>,
    },
    /// Restore a process from an image directory and print its pid; a
    /// container (by ID, with --bundle) is not implemented yet.
    Restore {
        /// Directory holding the snapshot.
        #[arg(long)]
        image_path: Option<PathBuf>,
        /// Write the restored process's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
        /// The bundle of the container to restore into (with ID).
        #[arg(short, long)]
        bundle: Option<PathBuf>,
        /// Return once the container is restored (with ID).
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        runc: oci_cli::RuncCriuArgs,
        /// A container to restore (not implemented yet).
        id: Option<String>,
    },
    /// Work with snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
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

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Print a snapshot's contents for humans (or as JSON).
    Inspect {
        /// Directory holding the snapshot.
        dir: PathBuf,
        /// Print the full manifest as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What the command ends with: success, or the exit code of a container
/// process (`run`, `exec`).
fn run(cli: Cli) -> anyhow::Result<u8> {
    let root = cli.root.as_path();
    match cli.command {
        Command::Checkpoint {
            pid,
            image_path,
            leave_running,
            timings,
            runc,
            id,
        } => {
            if let Some(id) = id {
                return Err(
                    oci::Error::NotImplemented(format!("checkpoint of container {id}")).into(),
                );
            }
            if let Some(flag) = runc.given() {
                bail!("{flag} applies to a container checkpoint (ID), not to --pid");
            }
            let (Some(pid), Some(image_path)) = (pid, image_path) else {
                bail!("checkpoint needs --pid and --image-path (or a container ID)");
            };
            let report =
                dump::checkpoint(pid, &image_path, &dump::CheckpointOptions { leave_running })?;
            if timings {
                eprintln!(
                    "checkpoint of pid {pid}: {} vmas, {} fds, {} bytes of pages",
                    report.vmas, report.fds, report.pages_bytes
                );
                eprintln!("{}", report.timings);
            }
        }
        Command::Restore {
            image_path,
            pid_file,
            timings,
            id,
            bundle,
            detach,
            runc,
        } => {
            if let Some(id) = id {
                return Err(
                    oci::Error::NotImplemented(format!("restore of container {id}")).into(),
                );
            }
            if let Some(flag) = runc
                .given()
                .or(bundle.is_some().then_some("--bundle"))
                .or(detach.then_some("--detach"))
            {
                bail!("{flag} applies to a container restore (ID)");
            }
            let Some(image_path) = image_path else {
                bail!("restore needs --image-path (or a container ID)");
            };
            let report = restore::restore(&image_path, &restore::RestoreOptions::default())?;
            if let Some(f) = pid_file {
                write_pid_file(&f, report.pid)
                    .with_context(|| format!("writing pid file {}", f.display()))?;
            }
            if timings {
                eprintln!(
                    "restore of pid {}: {} bytes of pages",
                    report.pid, report.pages_bytes
                );
                eprintln!("{}", report.timings);
            }
            if !report.pid_kept {
                eprintln!(
                    "snaprun: warning: the original pid was in use; restored as pid {}",
                    report.pid
                );
            }
            println!("{}", report.pid);
        }
        Command::Snapshot {
            command: SnapshotCommand::Inspect { dir, json },
        } => {
            let image = snaprun_snapshot::Image::open(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&image.manifest)?);
            } else {
                print!("{}", inspect::summary(&image));
            }
        }
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

/// Writes the pid atomically (temp file and rename), as runc does.
fn write_pid_file(path: &std::path::Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.systemd_cgroup {
        tracing::debug!("--systemd-cgroup: accepted, cgroupfs is used");
    }
    let logger = logging::init(
        cli.log_level.as_deref(),
        cli.debug,
        cli.log.as_deref(),
        cli.log_format,
    );
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            logger.fatal(&msg);
            eprintln!("snaprun: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
