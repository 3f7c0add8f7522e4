//! `snaprun`: checkpoint and restore processes.

mod bench;
mod inspect;
mod snapshot_cmd;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use snaprun_snapshot::image::{Image, ImageOptions, ImageTarget};
use snaprun_snapshot::{dump, restore};
use snaprun_store::{store_dir, RefName, Store};

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

/// Where a checkpoint goes: an image directory or a named snapshot.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
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
#[group(required = true, multiple = false)]
struct RestoreSource {
    /// Directory holding the snapshot.
    #[arg(long)]
    image_path: Option<PathBuf>,
    /// The named snapshot NAME:TAG in the store.
    #[arg(long, value_name = "NAME:TAG")]
    from: Option<RefName>,
}

#[derive(Subcommand)]
enum Command {
    /// Checkpoint a running process into an image directory or the store.
    Checkpoint {
        /// The process to checkpoint.
        #[arg(long)]
        pid: i32,
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
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Restore a process from an image directory or the store; prints its pid.
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
        /// Print the time of each phase to stderr.
        #[arg(long)]
        timings: bool,
    },
    /// Work with snapshots.
    Snapshot {
        #[command(subcommand)]
        command: snapshot_cmd::SnapshotCommand,
    },
    /// Measure things.
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
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
            target,
            store,
            no_compress,
            leave_running,
            timings,
        } => {
            let target = match (target.image_path, target.to) {
                (Some(dir), _) => ImageTarget::Dir(dir),
                (None, Some(name)) => ImageTarget::Store {
                    dir: store_dir(store.as_deref()),
                    name,
                },
                (None, None) => unreachable!("clap requires one of --image-path and --to"),
            };
            let mut image = ImageOptions::default();
            if no_compress {
                image.level = 0;
            }
            let opts = dump::CheckpointOptions {
                leave_running,
                image,
            };
            let report = dump::checkpoint_to(pid, &target, &opts)
                .with_context(|| format!("checkpoint of pid {pid} to {}", target.describe()))?;
            if timings {
                let s = report.stored;
                eprintln!(
                    "checkpoint of pid {pid}: {} vmas, {} fds, {} bytes of pages; stored {} new bytes as {}, {} deduplicated, {} zero; root {}",
                    report.vmas, report.fds, report.pages_bytes, s.new_bytes, s.stored_bytes, s.dedup_bytes, s.zero_bytes, report.root
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
            timings,
        } => {
            let image = match (source.image_path, source.from) {
                (Some(dir), _) => Image::open(&dir)?,
                (None, Some(name)) => {
                    let mut st = Store::open(&store_dir(store.as_deref()))?;
                    if let Some(url) = &remote {
                        st.add_remote(snaprun_store::tier::open_remote(url)?);
                    }
                    Image::open_named(Arc::new(st), &name)?
                }
                (None, None) => unreachable!("clap requires one of --image-path and --from"),
            };
            let opts = restore::RestoreOptions {
                pid_ns: if new_pidns {
                    restore::pidns::PidNsMode::New
                } else {
                    restore::pidns::PidNsMode::Auto
                },
            };
            let report = restore::restore_from(image, &opts)?;
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
        Command::Snapshot { command } => snapshot_cmd::run(command)?,
        Command::Bench { command } => bench::run(command)?,
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
