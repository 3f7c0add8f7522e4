//! `checkpoint ID`: the container's init and its descendants go through the
//! engine (`dump::checkpoint_with`); while they are frozen, snaprun checks
//! that the container has no other process (an `exec`'d one would be lost),
//! that none runs under seccomp, and stores what the bundle does not hold:
//! the contents of the container's tmpfs mounts, as an attachment of the
//! snapshot ([`ContainerImage`]). Unless `--leave-running`, the container
//! is then deleted, as runc does, so it can be restored under its id. A
//! paused container is thawed for the checkpoint (and paused again if it
//! is left running). (File locks are refused by the engine's fd dump.)

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snaprun_snapshot::dump::{self, CheckpointReport, DumpError, TreePids};
use snaprun_snapshot::image::{Attachment, ImageTarget, ImageWriter};

use super::error::Error;
use super::mounts::secure_join;
use super::state::{Container, Status};
use super::tmpfs::{self, TmpfsError, TmpfsImage};
use super::{delete, proc};

/// The name of the snapshot attachment that describes the container.
pub const ATTACHMENT: &str = "oci.container";

/// In the state dir: which files the init got as its stdio at create.
pub const STDIO_FILE: &str = "stdio.json";

/// One of the init's stdio fds at create: the file it was, by device and
/// inode (a pipe's inode, a file's).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct StdioFile {
    pub fd: i32,
    pub dev: u64,
    pub ino: u64,
}

fn fd_identity(path: &str) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Records, in the container's state dir, the files that this process's
/// fds 0-2 are: the container's init inherits them (create calls this).
/// Checkpoint takes those of the init's stdio fds that are still these
/// files as inherited (not saved; restore gives its own), as runc does
/// with the stdio it was given.
pub fn record_stdio(dir: &Path) -> Result<(), Error> {
    let files: Vec<StdioFile> = (0..3)
        .filter_map(|fd| {
            let (dev, ino) = fd_identity(&format!("/proc/self/fd/{fd}"))?;
            Some(StdioFile { fd, dev, ino })
        })
        .collect();
    let bytes = serde_json::to_vec(&files).map_err(|source| Error::Json {
        what: "encode the stdio record".into(),
        source,
    })?;
    super::state::write_atomic(&dir.join(STDIO_FILE), &bytes)
}

/// The init's fds (of 0-2) that are still the files recorded at create.
fn inherited_stdio(c: &Container) -> Vec<i32> {
    let path = c.dir.join(STDIO_FILE);
    let recorded: Vec<StdioFile> = match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
        Err(_) => {
            tracing::warn!(
                id = c.id(),
                "no {STDIO_FILE}: the init's stdio is saved as it is"
            );
            Vec::new()
        }
    };
    recorded
        .iter()
        .filter(|r| {
            fd_identity(&format!("/proc/{}/fd/{}", c.saved.pid, r.fd)) == Some((r.dev, r.ino))
        })
        .map(|r| r.fd)
        .collect()
}

/// What a container checkpoint keeps beside the process tree.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ContainerImage {
    /// The container's id and bundle at checkpoint (informative: restore
    /// takes both from its command line).
    pub id: String,
    pub bundle: PathBuf,
    /// The rootfs was writable: changes made to it are not in the snapshot
    /// (restore uses the bundle's rootfs as it is then).
    pub rootfs_writable: bool,
    /// The contents of the container's writable tmpfs mounts.
    pub tmpfs: Vec<TmpfsImage>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Oci(#[from] Error),
    #[error("container {id} is {status}: only a running container can be checkpointed (container not running)")]
    NotRunning { id: String, status: Status },
    #[error("checkpoint of container {id}: {source}")]
    Dump { id: String, source: DumpError },
    #[error("container {id} has a user namespace, which snaprun cannot checkpoint yet (the engine records ids as the host sees them)")]
    UserNamespace { id: String },
}

/// Why a container is refused while its processes are frozen.
#[derive(Debug, thiserror::Error)]
pub enum FrozenError {
    #[error("container {id} has processes outside its init's process tree (pids {pids:?}, e.g. started by `snaprun exec`); they would be lost: end them first")]
    OutsideTree { id: String, pids: Vec<i32> },
    #[error("pid {pid} of container {id} runs under a seccomp filter, which snaprun cannot restore yet (the container's linux.seccomp)")]
    Seccomp { id: String, pid: i32 },
    #[error("reading {path}: {source}")]
    Proc {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tmpfs(Box<TmpfsError>),
    #[error(transparent)]
    Oci(#[from] Error),
}

impl From<TmpfsError> for FrozenError {
    fn from(e: TmpfsError) -> Self {
        FrozenError::Tmpfs(Box::new(e))
    }
}

impl From<FrozenError> for DumpError {
    fn from(e: FrozenError) -> Self {
        DumpError::Caller(Box::new(e))
    }
}

#[derive(Clone, Debug)]
pub struct CheckpointOptions {
    pub target: ImageTarget,
    /// The engine's options (`leave_running`, `tcp_close`, compression).
    pub engine: dump::CheckpointOptions,
}

/// What a container checkpoint did.
pub struct Checkpointed {
    pub report: CheckpointReport,
    pub container: ContainerImage,
}

/// Checkpoints container ID (see the module's doc).
pub fn checkpoint(
    root: &Path,
    id: &str,
    opts: &CheckpointOptions,
) -> Result<Checkpointed, CheckpointError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(CheckpointError::NotRunning {
            id: id.to_string(),
            status,
        });
    }
    // A frozen task cannot take the ptrace stops the engine's freeze waits
    // for: a paused container (containerd pauses before it checkpoints) is
    // thawed for the checkpoint, and frozen again if it is left running or
    // the checkpoint fails.
    let paused = status == Status::Paused;
    if paused {
        c.saved.cgroup.set_frozen(false)?;
    }
    let done = checkpoint_running(&c, opts);
    if paused && (opts.engine.leave_running || done.is_err()) {
        if let Err(e) = c.saved.cgroup.set_frozen(true) {
            tracing::warn!(id, "could not pause the container again: {e}");
        }
    }
    done
}

fn checkpoint_running(
    c: &Container,
    opts: &CheckpointOptions,
) -> Result<Checkpointed, CheckpointError> {
    let id = c.id();
    let spec = c.spec()?;
    let init = c.saved.pid;
    let linux = spec.linux.clone().unwrap_or_default();
    if linux.namespaces.iter().any(|n| n.kind == "user") {
        return Err(CheckpointError::UserNamespace { id: id.to_string() });
    }
    let rootfs_writable = !spec.root.as_ref().is_some_and(|r| r.readonly);
    if rootfs_writable {
        tracing::warn!(
            id,
            "the rootfs is writable: changes made to it are not saved (restore uses the bundle's rootfs as it is then)"
        );
    }
    // The tmpfs mounts of the config, as the container sees their paths.
    let wanted: Vec<String> = spec
        .mounts
        .iter()
        .filter(|m| m.kind.as_deref() == Some("tmpfs"))
        .filter_map(|m| {
            let full = secure_join(&c.saved.rootfs, Path::new(&m.destination));
            let rel = full.strip_prefix(&c.saved.rootfs).ok()?;
            Some(format!("/{}", rel.display()))
        })
        .collect();
    let mut container = ContainerImage {
        id: id.to_string(),
        bundle: c.saved.bundle.clone(),
        rootfs_writable,
        tmpfs: Vec::new(),
    };
    let mut engine = opts.engine.clone();
    // Ids as the container sees them (its init is pid 1), and the stdio it
    // was given, which leads outside it, handed over at restore.
    engine.own_pid_ns = true;
    engine.inherit_fds = inherited_stdio(c);
    let mut hook = |pids: &TreePids,
                    writer: &mut ImageWriter|
     -> Result<Vec<Attachment>, DumpError> {
        check_only_tree(c, pids)?;
        check_no_seccomp(id, &pids.live)?;
        container.tmpfs = save_tmpfs(init, &wanted, writer)?;
        let meta = serde_json::to_value(&container).map_err(|e| DumpError::Caller(Box::new(e)))?;
        Ok(vec![Attachment {
            name: ATTACHMENT.into(),
            meta,
            data: None,
        }])
    };
    let report =
        dump::checkpoint_with(init, &opts.target, &engine, &mut hook).map_err(|source| {
            CheckpointError::Dump {
                id: id.to_string(),
                source,
            }
        })?;
    if !opts.engine.leave_running {
        // As runc: a checkpointed container is gone (any straggler that
        // joined its cgroup after the check goes with it).
        delete::kill_all(c)?;
        delete::destroy(c)?;
    }
    Ok(Checkpointed { report, container })
}

/// Refuses a container whose cgroup holds a live process that is not in
/// the frozen tree.
fn check_only_tree(c: &Container, pids: &TreePids) -> Result<(), FrozenError> {
    let tree: HashSet<i32> = pids.live.iter().chain(&pids.zombies).copied().collect();
    let outside: Vec<i32> = c
        .saved
        .cgroup
        .pids()?
        .into_iter()
        .filter(|p| !tree.contains(p))
        .filter(|&p| proc::state_and_start(p).is_some_and(|(s, _)| s != 'Z'))
        .collect();
    if outside.is_empty() {
        Ok(())
    } else {
        Err(FrozenError::OutsideTree {
            id: c.id().to_string(),
            pids: outside,
        })
    }
}

/// Refuses processes under a seccomp filter (or strict mode): the engine
/// does not restore filters yet.
fn check_no_seccomp(id: &str, pids: &[i32]) -> Result<(), FrozenError> {
    for &pid in pids {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).map_err(|source| FrozenError::Proc {
            path: path.clone(),
            source,
        })?;
        let mode = text
            .lines()
            .find_map(|l| l.strip_prefix("Seccomp:"))
            .map(str::trim);
        if mode.is_some_and(|m| m != "0") {
            return Err(FrozenError::Seccomp {
                id: id.to_string(),
                pid,
            });
        }
    }
    Ok(())
}

/// Saves each writable tmpfs of the container that its config mounts
/// (others, made by the container's processes, would not be made again
/// at restore).
fn save_tmpfs(
    init: i32,
    wanted: &[String],
    writer: &mut ImageWriter,
) -> Result<Vec<TmpfsImage>, FrozenError> {
    let read = |name: &str| {
        let path = format!("/proc/{init}/{name}");
        std::fs::read_to_string(&path).map_err(|source| FrozenError::Proc { path, source })
    };
    let (uid_map, gid_map) = (read("uid_map")?, read("gid_map")?);
    let mounts = tmpfs::tmpfs_mounts(init).map_err(|source| FrozenError::Proc {
        path: format!("/proc/{init}/mountinfo"),
        source,
    })?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (mount_point, ro) in mounts {
        if !wanted.contains(&mount_point) || !seen.insert(mount_point.clone()) {
            continue;
        }
        if ro {
            tracing::debug!(mount = %mount_point, "read-only tmpfs: nothing to save");
            continue;
        }
        out.push(tmpfs::save(init, &mount_point, &uid_map, &gid_map, writer)?);
    }
    Ok(out)
}
