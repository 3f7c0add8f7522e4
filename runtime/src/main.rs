//! `snaprun`: checkpoint and restore processes.

mod inspect;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use snaprun_snapshot::{dump, restore};

#[derive(Parser)]
#[command(
    name = "snaprun",
    version,
    about = "Checkpoint and restore processes, warm"
)]
struct Cli {
    /// Log filter (e.g. `debug`, `snaprun_snapshot=trace`); also SNAPRUN_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process into an image directory.
    Checkpoint {
        /// The process to checkpoint.
        #[arg(long)]
        pid: i32,
        /// Directory to write the snapshot into (created if missing).
        #[arg(long)]
        image_path: PathBuf,
        /// Resume the process afterwards instead of ending it.
        #[arg(long)]
        leave_running: bool,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Restore a process from an image directory; prints its pid.
    Restore {
        /// Directory holding the snapshot.
        #[arg(long)]
        image_path: PathBuf,
        /// Write the restored process's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Restore into a new PID namespace (the default does so only when
        /// the snapshot's pid or a thread id is in use on the host).
        #[arg(long)]
        new_pidns: bool,
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Work with snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
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

fn init_logging(level: Option<&str>) {
    let filter = level
        .map(str::to_string)
        .or_else(|| std::env::var("SNAPRUN_LOG").ok())
        .unwrap_or_else(|| "warn".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Checkpoint {
            pid,
            image_path,
            leave_running,
            timings,
        } => {
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
            new_pidns,
            timings,
        } => {
            let opts = restore::RestoreOptions {
                pid_ns: if new_pidns {
                    restore::pidns::PidNsMode::New
                } else {
                    restore::pidns::PidNsMode::Auto
                },
            };
            let report = restore::restore(&image_path, &opts)?;
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
    }
    Ok(())
}

/// Writes the pid atomically (temp file and rename), as runc does.
fn write_pid_file(path: &std::path::Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pid.to_string())?;
    std::fs::rename(&tmp, path)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snaprun: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
