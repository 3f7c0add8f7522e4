//! `snaprun gpu ...`: a CUDA process's GPU state through the driver, with
//! no CPU dump: `suspend` moves its GPU memory into its host memory and
//! frees the GPU, `resume` brings it back (hot-swap of model servers on one
//! GPU), `state` prints the driver's state. See docs/gpu.md.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use cuda_ckpt::{Client, GpuPair};

#[derive(Subcommand)]
pub enum GpuCommand {
    /// Lock and checkpoint a running CUDA process: its GPU memory moves to
    /// its host memory and the GPU is free.
    Suspend {
        pid: i32,
        /// Seconds the lock may wait for the process's GPU work.
        #[arg(long, value_name = "SECS", default_value_t = cuda_ckpt::DEFAULT_LOCK_TIMEOUT.as_secs_f64())]
        lock_timeout: f64,
    },
    /// Restore and unlock a suspended CUDA process.
    Resume {
        pid: i32,
        /// Restore onto other GPUs: OLD=NEW, two GPU UUIDs (nvidia-smi -L);
        /// repeat, or separate with commas.
        #[arg(long, value_name = "OLD=NEW", value_delimiter = ',')]
        gpu_map: Vec<GpuPair>,
    },
    /// Print the driver's checkpoint state of a process.
    State { pid: i32 },
}

pub fn run(command: GpuCommand) -> anyhow::Result<()> {
    let pid = match &command {
        GpuCommand::Suspend { pid, .. }
        | GpuCommand::Resume { pid, .. }
        | GpuCommand::State { pid } => *pid,
    };
    let mut client = Client::open().with_context(|| format!("pid {pid}"))?;
    let started = Instant::now();
    match command {
        GpuCommand::Suspend { pid, lock_timeout } => {
            let timeout = Duration::try_from_secs_f64(lock_timeout)
                .with_context(|| format!("--lock-timeout {lock_timeout}"))?;
            client.suspend(pid, timeout)?;
            eprintln!(
                "snaprun: pid {pid} suspended in {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
        GpuCommand::Resume { pid, gpu_map } => {
            client.resume(pid, &gpu_map)?;
            eprintln!(
                "snaprun: pid {pid} resumed in {:.3} s",
                started.elapsed().as_secs_f64()
            );
        }
        GpuCommand::State { pid } => println!("{}", client.state(pid)?),
    }
    Ok(())
}
