//! `restore --bundle B ID`: a new container is created from the bundle with
//! the normal create code (namespaces, a new PID namespace, rootfs, mounts,
//! devices, cgroups, hostname...), but its init, once the rootfs and mounts
//! are in place and the saved tmpfs contents written back, becomes the
//! engine's restore stub instead of waiting for `start`: it asks to be
//! traced, maps the trampoline and stops. The engine then adopts it
//! (`restore::Adopt`), forks the rest of the tree from it and morphs every
//! process, which gets its own credentials back from the snapshot. The
//! restored init is pid 1 of the container, as the checkpointed one was.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use snaprun_snapshot::image::{Image, ImageError};
use snaprun_snapshot::restore::{self as engine, Adopt, RestoreReport};
use snaprun_snapshot::RestoreError as EngineError;

use super::checkpoint::{ContainerImage, ATTACHMENT};
use super::create::{self, CreateOptions};
use super::error::{Error, Result};
use super::spec::Spec;
use super::state::Container;
use super::sync::Channel;
use super::tmpfs::{self, EntryKind, TmpfsError, TmpfsImage};
use super::{delete, process};

#[derive(Debug, thiserror::Error)]
pub enum ContainerRestoreError {
    #[error(transparent)]
    Oci(#[from] Error),
    #[error("{snapshot} is not a container checkpoint (no {ATTACHMENT} attachment; `snaprun checkpoint ID` makes one, `restore` without an ID restores a process)")]
    NotAContainer { snapshot: String },
    #[error("{snapshot}: bad {ATTACHMENT} attachment: {source}")]
    BadAttachment {
        snapshot: String,
        source: serde_json::Error,
    },
    #[error("{snapshot}: tmpfs {mount}: reading {path}: {source}")]
    TmpfsData {
        snapshot: String,
        mount: String,
        path: String,
        source: Box<ImageError>,
    },
    #[error("restore of container {id}: {source}")]
    Engine {
        id: String,
        source: Box<EngineError>,
    },
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub bundle: PathBuf,
    pub no_pivot: bool,
    /// Serve the container's memory lazily through a pager (docs/pager.md).
    pub lazy: Option<snaprun_snapshot::pager::LazyOptions>,
}

/// What the container's init does in a restore instead of running the
/// container's program: the trampoline's address and the tmpfs contents
/// to write back (each file's bytes, in entry order).
pub struct RestoreInit {
    pub trampoline: u64,
    pub tmpfs: Vec<TmpfsContent>,
}

/// A saved tmpfs and the bytes of each of its regular files, in order.
pub type TmpfsContent = (TmpfsImage, Vec<Vec<u8>>);

impl std::fmt::Debug for RestoreInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreInit")
            .field("trampoline", &format_args!("{:#x}", self.trampoline))
            .field(
                "tmpfs",
                &self
                    .tmpfs
                    .iter()
                    .map(|(t, _)| t.destination.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The restored container.
pub struct Restored {
    /// The init's pid in the runtime's PID namespace.
    pub pid: i32,
    pub report: RestoreReport,
    pub container: ContainerImage,
}

/// Restores the container checkpoint IMAGE as container ID (see the
/// module's doc). Must be called from a single-threaded process (create's
/// rule). The restored init is a child of the caller.
pub fn restore(
    root: &Path,
    id: &str,
    image: Image,
    opts: &RestoreOptions,
) -> std::result::Result<Restored, ContainerRestoreError> {
    let attachment = image
        .manifest
        .attachments
        .iter()
        .find(|a| a.name == ATTACHMENT)
        .ok_or_else(|| ContainerRestoreError::NotAContainer {
            snapshot: image.label.clone(),
        })?;
    let container: ContainerImage =
        serde_json::from_value(attachment.meta.clone()).map_err(|source| {
            ContainerRestoreError::BadAttachment {
                snapshot: image.label.clone(),
                source,
            }
        })?;
    if container.rootfs_writable {
        tracing::info!(
            id,
            "the checkpointed rootfs was writable; its changes were not saved: the bundle's rootfs is used as it is"
        );
    }
    let tmpfs = read_tmpfs(&image, &container)?;
    let engine_err = |source| ContainerRestoreError::Engine {
        id: id.to_string(),
        source: Box::new(source),
    };
    let trampoline = engine::trampoline_for(&image.manifest).map_err(engine_err)?;
    let created = create::create(
        root,
        id,
        &CreateOptions {
            bundle: opts.bundle.clone(),
            no_pivot: opts.no_pivot,
            restore: Some(Arc::new(RestoreInit { trampoline, tmpfs })),
            ..Default::default()
        },
    )?;
    let engine_opts = engine::RestoreOptions {
        adopt: Some(Adopt {
            pid: created.pid,
            trampoline,
        }),
        // The init's stdio is this process's (create's clone inherits it).
        inherit_fds: (0..3).map(|fd| (fd, fd)).collect(),
        lazy: opts.lazy.clone(),
        ..Default::default()
    };
    match engine::restore_from(image, &engine_opts) {
        Ok(report) => Ok(Restored {
            pid: created.pid,
            report,
            container,
        }),
        Err(source) => {
            // The engine killed the stub; the container goes with it.
            if let Ok(c) = Container::load(root, id) {
                let _ = delete::kill_all(&c);
                let _ = delete::destroy(&c);
            }
            Err(engine_err(source))
        }
    }
}

/// Every saved tmpfs file's bytes, read (and verified) before the
/// container exists.
fn read_tmpfs(
    image: &Image,
    container: &ContainerImage,
) -> std::result::Result<Vec<TmpfsContent>, ContainerRestoreError> {
    let mut out = Vec::with_capacity(container.tmpfs.len());
    for t in &container.tmpfs {
        let mut files = Vec::new();
        for e in t.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let mut buf = Vec::new();
            if let Some(run) = &e.data {
                image.read_run(run, &mut buf).map_err(|source| {
                    ContainerRestoreError::TmpfsData {
                        snapshot: image.label.clone(),
                        mount: t.destination.clone(),
                        path: e.path.clone(),
                        source: Box::new(source),
                    }
                })?;
            }
            files.push(buf);
        }
        out.push((t.clone(), files));
    }
    Ok(out)
}

/// The init's side (`init.rs`), after pivot_root: writes the tmpfs
/// contents back, sets what the engine does not restore (oom_score_adj)
/// and the config's rlimits, then becomes the stub: traced by the
/// runtime, trampoline mapped, `stub` sent, stopped. Credentials,
/// capabilities and no_new_privs are left to the engine; seccomp is
/// refused at checkpoint.
pub(super) fn init_stub(spec: &Spec, channel: &mut Channel, r: &RestoreInit) -> Result<Infallible> {
    for (image, data) in &r.tmpfs {
        tmpfs::extract(image, data).map_err(|e| match e {
            TmpfsError::Io { path, source, .. } => {
                Error::io("restore the saved tmpfs entry", path, source)
            }
            other => Error::Restore(other.to_string()),
        })?;
    }
    let p = spec.process.clone().unwrap_or_default();
    if let Some(adj) = p.oom_score_adj {
        process::set_oom_score_adj(adj)?;
    }
    process::set_rlimits(&p.rlimits)?;
    engine::stub::prepare_self(r.trampoline).map_err(|code| {
        Error::Restore(format!(
            "becoming the restore stub (trampoline at {:#x}): {}",
            r.trampoline,
            engine::stub::describe_prepare_error(code)
        ))
    })?;
    // The restored process must outlive a detached `restore`; from here on
    // the tracer's PTRACE_O_EXITKILL takes over.
    nix::sys::prctl::set_pdeathsig(None).map_err(|e| Error::sys("prctl PR_SET_PDEATHSIG", e))?;
    channel.send("stub")?;
    engine::stub::stop_self()
}
