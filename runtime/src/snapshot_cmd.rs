//! `snaprun snapshot ...`: named snapshots in the store: ls, inspect,
//! verify, rm, gc, push, pull.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use snaprun_snapshot::image::{parse_envelope, Image};
use snaprun_store::{gc, pull, push, store_dir, tier, RefName, Store};

use crate::inspect;

#[derive(Subcommand)]
pub enum SnapshotCommand {
    /// List the named snapshots in the store.
    Ls {
        /// The store directory (default: $SNAPRUN_STORE, else /var/lib/snaprun).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Print a snapshot for humans (or as JSON): an image directory or NAME:TAG.
    Inspect {
        /// An image directory, or NAME:TAG in the store.
        target: String,
        /// Print the full manifest as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Read every chunk of a snapshot through the tiers and verify it.
    Verify {
        name: RefName,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// A remote tier to fall through to (s3://bucket/prefix, file:///dir).
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
    },
    /// Remove names; their chunks are reclaimed by `gc`.
    Rm {
        #[arg(required = true)]
        names: Vec<RefName>,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Remove every chunk no named snapshot references (waits for running
    /// checkpoints).
    Gc {
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Copy a snapshot to a remote, moving only the chunks it lacks.
    Push {
        name: RefName,
        /// s3://bucket/prefix (AWS_* variables) or file:///dir.
        #[arg(long, value_name = "URL")]
        remote: String,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
    /// Copy a snapshot from a remote, moving only the chunks the store lacks.
    Pull {
        name: RefName,
        #[arg(long, value_name = "URL")]
        remote: String,
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
    },
}

fn open(store: Option<&Path>) -> anyhow::Result<Store> {
    let dir = store_dir(store);
    Store::open(&dir).with_context(|| format!("opening the store {}", dir.display()))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn run(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Ls { store } => {
            let st = open(store.as_deref())?;
            println!(
                "{:<32} {:<12} {:>7} {:>12} {:>12}",
                "NAME", "ROOT", "CHUNKS", "DATA", "STORED"
            );
            for (name, digest) in st.list_refs()? {
                match st.load_root(&digest) {
                    Ok(root) => {
                        let (data, stored) = root
                            .chunks
                            .iter()
                            .filter_map(|d| st.chunk_sizes(d))
                            .fold((0, 0), |(a, b), (l, s)| (a + l, b + s));
                        println!(
                            "{:<32} {:<12} {:>7} {:>12} {:>12}",
                            name.to_string(),
                            digest.short(),
                            root.chunks.len(),
                            mib(data),
                            mib(stored)
                        );
                    }
                    Err(e) => {
                        println!("{:<32} {:<12} error: {e}", name.to_string(), digest.short())
                    }
                }
            }
        }
        SnapshotCommand::Inspect {
            target,
            json,
            store,
        } => {
            let path = Path::new(&target);
            let image = if path.is_dir() || target.contains('/') {
                Image::open(path)?
            } else {
                let name: RefName = target.parse()?;
                Image::open_named(Arc::new(open(store.as_deref())?), &name)?
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&image.manifest)?);
            } else {
                print!("{}", inspect::summary(&image));
            }
        }
        SnapshotCommand::Verify {
            name,
            store,
            remote,
        } => {
            let mut st = open(store.as_deref())?;
            if let Some(url) = &remote {
                st.add_remote(tier::open_remote(url)?);
            }
            let (_, root) = st.open_snapshot(&name)?;
            let path = PathBuf::from(name.to_string());
            parse_envelope(&root.manifest, &path)?;
            let n = st.verify(&name)?;
            println!("{name}: manifest and {n} chunks verified");
        }
        SnapshotCommand::Rm { names, store } => {
            let st = open(store.as_deref())?;
            for n in &names {
                st.remove_ref(n)?;
            }
        }
        SnapshotCommand::Gc { store } => {
            let st = open(store.as_deref())?;
            let r = gc(&st)?;
            println!(
                "kept {} snapshots ({} chunks); removed {} unnamed roots, {} packs; repacked {}; freed {}",
                r.kept_snapshots,
                r.kept_chunks,
                r.removed_roots,
                r.removed_packs,
                r.repacked_packs,
                mib(r.freed_bytes)
            );
        }
        SnapshotCommand::Push {
            name,
            remote,
            store,
        } => {
            let st = open(store.as_deref())?;
            let r = push(&st, &name, tier::open_remote(&remote)?)
                .with_context(|| format!("push {name} to {remote}"))?;
            println!(
                "{name}: {} chunks, {} copied ({}) in {} packs",
                r.chunks,
                r.copied_chunks,
                mib(r.copied_bytes),
                r.packs
            );
        }
        SnapshotCommand::Pull {
            name,
            remote,
            store,
        } => {
            let st = open(store.as_deref())?;
            let r = pull(&st, &name, tier::open_remote(&remote)?)
                .with_context(|| format!("pull {name} from {remote}"))?;
            println!(
                "{name}: {} chunks, {} copied ({}) in {} packs",
                r.chunks,
                r.copied_chunks,
                mib(r.copied_bytes),
                r.packs
            );
        }
    }
    Ok(())
}
