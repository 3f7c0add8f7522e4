//! `snaprun bench store`: checkpoint throughput with and without
//! compression, the compression ratio, and restore read throughput per
//! tier (RAM, disk, and a remote when given), on a real file (by default
//! the MiniLM weights that scripts/setup.sh installs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use snaprun_store::{push, tier, ChunkRef, RefName, SnapshotWriter, Store, StoreOptions};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The snapshot store: write, compression, reads per tier.
    Store {
        /// The data to store (default: the MiniLM weights in the venv).
        #[arg(long)]
        file: Option<PathBuf>,
        /// A remote tier to measure reads from (s3://bucket/prefix, file:///dir).
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// Where to put the temporary stores (default: the system temp dir).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
    },
    /// Cold start vs eager and lazy restore of the Python inference server,
    /// and the lazy pager's throughput vs a fresh-memory fill.
    ColdStart(crate::bench_cold_start::ColdStartArgs),
}

fn default_file() -> PathBuf {
    let venv = std::env::var_os("SNAPRUN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".venv"));
    venv.join("share/all-MiniLM-L6-v2/model.safetensors")
}

fn gbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e9
}

/// Stores `data` as one snapshot; returns the chunks, seconds and stored bytes.
fn write(dir: &Path, data: &[u8], level: i32) -> anyhow::Result<(Vec<ChunkRef>, f64, u64)> {
    let opts = StoreOptions {
        level,
        ..Default::default()
    };
    let store = Arc::new(Store::open_with(dir, opts)?);
    let t = Instant::now();
    let mut w = SnapshotWriter::new(store.clone())?;
    let mut refs = Vec::new();
    // In runs of 64 MiB, as the engine hands over large VMAs.
    for (i, part) in data.chunks(64 << 20).enumerate() {
        refs.extend(w.add((i as u64) << 26, part)?);
    }
    let stored = w.stats().stored_bytes;
    w.commit(b"{}", Some(&name()))?;
    Ok((refs, t.elapsed().as_secs_f64(), stored))
}

fn name() -> RefName {
    "bench:store".parse().expect("a valid name")
}

fn read_all(store: &Store, refs: &[ChunkRef], expect: &[u8]) -> anyhow::Result<f64> {
    let mut out = Vec::with_capacity(expect.len());
    let t = Instant::now();
    store.read_chunks(refs, &mut out, "bench:store")?;
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(out == expect, "read back other bytes than were written");
    Ok(secs)
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let (file, remote, work_dir) = match cmd {
        BenchCommand::Store {
            file,
            remote,
            work_dir,
        } => (file, remote, work_dir),
        BenchCommand::ColdStart(args) => return crate::bench_cold_start::run(args),
    };
    let file = file.unwrap_or_else(default_file);
    let data = std::fs::read(&file).with_context(|| {
        format!(
            "reading {} (run scripts/setup.sh for the model)",
            file.display()
        )
    })?;
    let n = data.len();
    let tmp = |what: &str| -> anyhow::Result<tempfile::TempDir> {
        let prefix = format!("snaprun-bench-{what}-");
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix);
        Ok(match &work_dir {
            Some(d) => b.tempdir_in(d)?,
            None => b.tempdir()?,
        })
    };
    println!(
        "data: {} ({:.1} MiB)",
        file.display(),
        n as f64 / (1 << 20) as f64
    );

    let raw_dir = tmp("raw")?;
    let (_, raw_secs, raw_stored) = write(raw_dir.path(), &data, 0)?;
    let zstd_dir = tmp("zstd")?;
    let (refs, z_secs, z_stored) =
        write(zstd_dir.path(), &data, snaprun_store::chunk::DEFAULT_LEVEL)?;
    println!(
        "checkpoint write, uncompressed: {:.2} GB/s (stored {} bytes)",
        gbps(n, raw_secs),
        raw_stored
    );
    println!(
        "checkpoint write, zstd-{}:       {:.2} GB/s ({:.2}x the uncompressed time)",
        snaprun_store::chunk::DEFAULT_LEVEL,
        gbps(n, z_secs),
        z_secs / raw_secs
    );
    println!(
        "compression ratio:              {:.3} (stored/raw; {:.1} % saved)",
        z_stored as f64 / n as f64,
        100.0 * (1.0 - z_stored as f64 / n as f64)
    );

    // Disk: a fresh store (cold RAM tier; the page cache may hold the packs).
    let ram_opts = StoreOptions {
        ram_bytes: (n as u64) * 2,
        ..Default::default()
    };
    let store = Store::open_with(zstd_dir.path(), ram_opts.clone())?;
    let disk_secs = read_all(&store, &refs, &data)?;
    let ram_secs = read_all(&store, &refs, &data)?;
    println!(
        "restore read, disk tier: {:.2} GB/s (baseline)",
        gbps(n, disk_secs)
    );
    println!(
        "restore read, RAM tier:  {:.2} GB/s ({:.1}x disk)",
        gbps(n, ram_secs),
        disk_secs / ram_secs
    );
    if let Some(url) = remote {
        let r = tier::open_remote(&url)?;
        let t = Instant::now();
        let report = push(&store, &name(), r.clone())?;
        let push_secs = t.elapsed().as_secs_f64();
        println!(
            "push to {url}: {:.2} GB/s of stored bytes ({} chunks)",
            report.copied_bytes as f64 / push_secs / 1e9,
            report.copied_chunks
        );
        let home = tmp("home")?;
        let mut fresh = Store::open_with(home.path(), ram_opts)?;
        fresh.add_remote(r);
        let remote_secs = read_all(&fresh, &refs, &data)?;
        println!(
            "restore read, remote tier ({url}), 8 chunks at a time: {:.2} GB/s ({:.2}x disk)",
            gbps(n, remote_secs),
            disk_secs / remote_secs
        );
    }
    Ok(())
}
