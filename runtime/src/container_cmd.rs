//! The container forms of `checkpoint ID` and `restore --bundle B ID`:
//! runc's flags and how they drive `oci::checkpoint` / `oci::restore`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use snaprun_runtime::oci::{self, state::Container};
use snaprun_snapshot::image::{Image, ImageOptions, ImageTarget};
use snaprun_snapshot::{dump, pager};
use snaprun_store::{store_dir, RefName, Store};

use crate::oci_cli::RuncCriuArgs;

/// runc's default image directory: `./checkpoint`.
pub const DEFAULT_IMAGE_DIR: &str = "checkpoint";

/// Flags runc has that snaprun cannot honour for a container: refused.
fn refuse_unsupported(runc: &RuncCriuArgs) -> anyhow::Result<()> {
    let unsupported = [
        (runc.pre_dump, "--pre-dump"),
        (runc.page_server.is_some(), "--page-server"),
        (runc.parent_path.is_some(), "--parent-path"),
        (runc.lazy_pages, "--lazy-pages"),
        (runc.status_fd.is_some(), "--status-fd"),
    ];
    if let Some((_, flag)) = unsupported.iter().find(|(set, _)| *set) {
        bail!("{flag} is not supported by snaprun (a whole snapshot is written at once)");
    }
    if runc.tcp_established {
        tracing::warn!("--tcp-established: open TCP connections cannot be kept; checkpoint refuses them (or closes them with --tcp-close)");
    }
    for (set, flag) in [
        (runc.ext_unix_sk, "--ext-unix-sk"),
        (runc.shell_job, "--shell-job"),
        (runc.file_locks, "--file-locks"),
        (runc.auto_dedup, "--auto-dedup"),
        (runc.manage_cgroups_mode.is_some(), "--manage-cgroups-mode"),
        (!runc.empty_ns.is_empty(), "--empty-ns"),
        (runc.work_path.is_some(), "--work-path"),
        (runc.no_subreaper, "--no-subreaper"),
    ] {
        if set {
            tracing::debug!(flag, "accepted for runc compatibility; no effect");
        }
    }
    Ok(())
}

pub struct CheckpointArgs {
    pub image_path: Option<PathBuf>,
    pub to: Option<RefName>,
    pub store: Option<PathBuf>,
    pub no_compress: bool,
    pub leave_running: bool,
    pub tcp_close: bool,
    pub timings: bool,
}

pub fn checkpoint(
    root: &Path,
    id: &str,
    a: CheckpointArgs,
    runc: &RuncCriuArgs,
) -> anyhow::Result<()> {
    refuse_unsupported(runc)?;
    let target = match (a.image_path, a.to) {
        (Some(dir), _) => ImageTarget::Dir(dir),
        (None, Some(name)) => ImageTarget::Store {
            dir: store_dir(a.store.as_deref()),
            name,
        },
        (None, None) => ImageTarget::Dir(PathBuf::from(DEFAULT_IMAGE_DIR)),
    };
    let mut image = ImageOptions::default();
    if a.no_compress {
        image.level = 0;
    }
    let opts = oci::checkpoint::CheckpointOptions {
        target: target.clone(),
        engine: dump::CheckpointOptions {
            leave_running: a.leave_running,
            tcp_close: a.tcp_close,
            image,
            // oci::checkpoint sets the container's own ids and stdio.
            ..Default::default()
        },
    };
    let done = oci::checkpoint::checkpoint(root, id, &opts)
        .with_context(|| format!("checkpoint of container {id} to {}", target.describe()))?;
    if a.timings {
        let r = &done.report;
        eprintln!(
            "checkpoint of container {id}: {} processes, {} threads, {} bytes of pages, {} tmpfs mounts; root {}",
            r.processes,
            r.threads,
            r.pages_bytes,
            done.container.tmpfs.len(),
            r.root
        );
        eprintln!("{}", r.timings);
    }
    Ok(())
}

pub struct RestoreArgs {
    pub image_path: Option<PathBuf>,
    pub from: Option<RefName>,
    pub store: Option<PathBuf>,
    pub remote: Option<String>,
    pub bundle: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub timings: bool,
    /// A lazy restore: the pager's options (docs/pager.md).
    pub lazy: Option<pager::LazyOptions>,
}

/// Restores container ID; in the foreground waits for its init and
/// returns its exit code (the container is deleted then, as after `run`).
pub fn restore(root: &Path, id: &str, a: RestoreArgs, runc: &RuncCriuArgs) -> anyhow::Result<i32> {
    refuse_unsupported(runc)?;
    if runc.console_socket.is_some() {
        bail!("--console-socket: a container with a terminal cannot be checkpointed, so none is restored");
    }
    let image = match (a.image_path, a.from) {
        (Some(dir), _) => Image::open(&dir)?,
        (None, Some(name)) => {
            let mut st = Store::open(&store_dir(a.store.as_deref()))?;
            if let Some(url) = &a.remote {
                st.add_remote(snaprun_store::tier::open_remote(url)?);
            }
            Image::open_named(Arc::new(st), &name)?
        }
        (None, None) => Image::open(Path::new(DEFAULT_IMAGE_DIR))?,
    };
    let opts = oci::restore::RestoreOptions {
        bundle: a.bundle.unwrap_or_else(|| PathBuf::from(".")),
        no_pivot: runc.no_pivot,
        lazy: a.lazy,
    };
    let restored = oci::restore::restore(root, id, image, &opts)?;
    if let Some(f) = &a.pid_file {
        oci::state::write_atomic(f, restored.pid.to_string().as_bytes())?;
    }
    if a.timings {
        eprintln!(
            "restore of container {id}: pid {}, {} processes, {} bytes of pages",
            restored.pid, restored.report.processes, restored.report.pages_bytes
        );
        if let Some(pg) = &restored.report.pager {
            eprintln!(
                "lazy: {} bytes served by the pager, {} bytes ({} chunks) of working set pushed before the resume",
                pg.lazy_bytes, pg.pushed_bytes, pg.pushed_chunks
            );
        }
        eprintln!("{}", restored.report.timings);
    }
    if let Some(pg) = &restored.report.pager {
        tracing::info!(id, pager = pg.pid, log = %pg.log.display(), "lazy restore: the pager serves the container's memory");
    }
    if a.detach {
        return Ok(0);
    }
    let code = crate::oci_cli::wait_forwarding(restored.pid)?;
    let c = Container::load(root, id)?;
    oci::delete::kill_all(&c)?;
    oci::delete::destroy(&c)?;
    Ok(code)
}
