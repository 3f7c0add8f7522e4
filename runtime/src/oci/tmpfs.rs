//! The contents of a container's tmpfs mounts, which its bundle does not
//! hold: saved at checkpoint (read from the host through
//! `/proc/INIT/root/MOUNTPOINT`, one store run per file) and written back
//! by the new container's init before the processes are restored.
//!
//! Kept: directories, regular files (with their data), symlinks and FIFOs,
//! with mode, owner (as the container sees it, through its user namespace's
//! maps) and the files' modification time. Not kept: device nodes (the
//! container's `/dev` is made again by create), sockets (the engine binds
//! them again), and anything under another mount point.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snaprun_snapshot::image::{ImageError, ImageWriter, PageRun};

/// One tmpfs mount of the container.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct TmpfsImage {
    /// Its mount point as the container sees it (absolute, no symlinks).
    pub destination: String,
    /// The mount's root directory first, then each entry after its parent.
    pub entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
    Fifo,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Entry {
    /// Relative to the mount point; empty for the mount's root.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (with setuid, setgid, sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    /// A symlink's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// A regular file's data (absent when empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PageRun>,
}

#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("tmpfs {mount}: {path}: {source}")]
    Io {
        mount: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tmpfs {mount}: {path}: storing its data: {source}")]
    Store {
        mount: String,
        path: PathBuf,
        source: Box<ImageError>,
    },
    #[error("tmpfs {mount}: {path}: {what}")]
    Bad {
        mount: String,
        path: String,
        what: String,
    },
}

/// A host id to the id the container sees, through an `uid_map` or
/// `gid_map` text (`INSIDE OUTSIDE COUNT` lines); 65534 (nobody) when the
/// map does not cover it.
pub fn map_to_inside(map: &str, host_id: u32) -> u32 {
    for line in map.lines() {
        let f: Vec<u64> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [inside, outside, count] = f[..] {
            let id = u64::from(host_id);
            if id >= outside && id < outside + count {
                return (inside + id - outside) as u32;
            }
        }
    }
    65534
}

/// The tmpfs mounts of process PID (from its mountinfo): mount points as
/// it sees them, with whether each is read-only.
pub fn tmpfs_mounts(pid: i32) -> std::io::Result<Vec<(String, bool)>> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(text.lines().filter_map(parse_tmpfs_line).collect())
}

fn parse_tmpfs_line(line: &str) -> Option<(String, bool)> {
    let (left, right) = line.split_once(" - ")?;
    let fstype = right.split_whitespace().next()?;
    if fstype != "tmpfs" {
        return None;
    }
    let f: Vec<&str> = left.split_whitespace().collect();
    let mount_point = unescape(f.get(4)?);
    let ro = f.get(5)?.split(',').any(|o| o == "ro");
    Some((mount_point, ro))
}

/// Mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the tmpfs mounted at DESTINATION in the container of process
/// PID (through `/proc/PID/root`), storing each file's data with WRITER.
/// Ids are mapped with the container's UID_MAP and GID_MAP texts.
pub fn save(
    pid: i32,
    destination: &str,
    uid_map: &str,
    gid_map: &str,
    writer: &mut ImageWriter,
) -> Result<TmpfsImage, TmpfsError> {
    let top = PathBuf::from(format!("/proc/{pid}/root{destination}"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TmpfsError::Io {
            mount: destination.to_string(),
            path,
            source,
        }
    };
    let root_meta = fs::symlink_metadata(&top).map_err(io(&top))?;
    let dev = root_meta.dev();
    let mut image = TmpfsImage {
        destination: destination.to_string(),
        entries: Vec::new(),
    };
    // Depth first, each directory before what it holds.
    let mut stack = vec![(String::new(), root_meta)];
    while let Some((rel, meta)) = stack.pop() {
        let full = if rel.is_empty() {
            top.clone()
        } else {
            top.join(&rel)
        };
        let ft = meta.file_type();
        let mut entry = Entry {
            path: rel.clone(),
            kind: EntryKind::Dir,
            mode: meta.mode() & 0o7777,
            uid: map_to_inside(uid_map, meta.uid()),
            gid: map_to_inside(gid_map, meta.gid()),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            target: None,
            data: None,
        };
        if ft.is_dir() {
            if meta.dev() != dev {
                // Another mount (e.g. /dev/pts under /dev): not ours.
                continue;
            }
            let mut children = Vec::new();
            for e in fs::read_dir(&full).map_err(io(&full))? {
                let e = e.map_err(io(&full))?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child_rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let m = fs::symlink_metadata(e.path()).map_err(io(&e.path()))?;
                children.push((child_rel, m));
            }
            children.sort_by(|a, b| b.0.cmp(&a.0));
            stack.extend(children);
        } else if ft.is_file() {
            entry.kind = EntryKind::File;
            if meta.len() > 0 {
                let bytes = fs::read(&full).map_err(io(&full))?;
                let run = writer.add(&bytes).map_err(|source| TmpfsError::Store {
                    mount: destination.to_string(),
                    path: full.clone(),
                    source: Box::new(source),
                })?;
                entry.data = Some(run);
            }
        } else if ft.is_symlink() {
            entry.kind = EntryKind::Symlink;
            let target = fs::read_link(&full).map_err(io(&full))?;
            entry.target = Some(target.to_string_lossy().into_owned());
        } else if ft.is_fifo() {
            entry.kind = EntryKind::Fifo;
        } else {
            if !(ft.is_char_device() || ft.is_block_device() || ft.is_socket()) {
                tracing::warn!(mount = destination, path = %rel, "unknown file type; not saved");
            }
            continue;
        }
        image.entries.push(entry);
    }
    Ok(image)
}

/// Writes the saved entries back under their mount point, in this
/// process's view (the container's init, after pivot_root). `data` holds
/// the bytes of each regular file entry (empty ones too), in order.
pub fn extract(image: &TmpfsImage, data: &[Vec<u8>]) -> Result<(), TmpfsError> {
    let base = Path::new(&image.destination);
    let mut files = data.iter();
    for e in &image.entries {
        let path = if e.path.is_empty() {
            base.to_path_buf()
        } else {
            base.join(&e.path)
        };
        let io = |source| TmpfsError::Io {
            mount: image.destination.clone(),
            path: path.clone(),
            source,
        };
        if e.path.split('/').any(|c| c == ".." || c == ".") || e.path.starts_with('/') {
            return Err(TmpfsError::Bad {
                mount: image.destination.clone(),
                path: e.path.clone(),
                what: "not a plain relative path".into(),
            });
        }
        match e.kind {
            EntryKind::Dir => match fs::create_dir(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(io(err)),
            },
            EntryKind::File => {
                let bytes = files.next().map(Vec::as_slice).unwrap_or_default();
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(e.mode)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io)?;
                f.write_all(bytes).map_err(io)?;
            }
            EntryKind::Symlink => {
                let target = e.target.as_deref().unwrap_or_default();
                match std::os::unix::fs::symlink(target, &path) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(err) => return Err(io(err)),
                }
            }
            EntryKind::Fifo => {
                match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(e.mode)) {
                    Ok(()) | Err(nix::Error::EEXIST) => {}
                    Err(err) => return Err(io(err.into())),
                }
            }
        }
        set_attrs(&path, e).map_err(io)?;
    }
    Ok(())
}

/// Owner, mode and modification time of an extracted entry (the owner and
/// time of a symlink itself).
fn set_attrs(path: &Path, e: &Entry) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: e.mtime_ns.div_euclid(1_000_000_000),
            tv_nsec: e.mtime_ns.rem_euclid(1_000_000_000),
        },
    ];
    // SAFETY: C is a NUL-terminated path and TIMES a live array of two
    // timespecs, both valid for the calls.
    unsafe {
        if libc::lchown(c.as_ptr(), e.uid, e.gid) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if e.kind != EntryKind::Symlink && libc::chmod(c.as_ptr(), e.mode) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if e.kind != EntryKind::Dir
            && libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_through_the_user_namespace() {
        let identity = "         0          0 4294967295\n";
        assert_eq!(map_to_inside(identity, 1000), 1000);
        let userns = "0 100000 65536\n";
        assert_eq!(map_to_inside(userns, 100_005), 5);
        assert_eq!(map_to_inside(userns, 7), 65534);
    }

    #[test]
    fn mountinfo_lines() {
        let l = "612 600 0:52 / /run rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k";
        assert_eq!(parse_tmpfs_line(l), Some(("/run".into(), false)));
        let l = "613 600 0:53 / /my\\040dir ro,relatime shared:4 - tmpfs tmpfs ro";
        assert_eq!(parse_tmpfs_line(l), Some(("/my dir".into(), true)));
        let l = "614 600 0:5 / /proc rw - proc proc rw";
        assert_eq!(parse_tmpfs_line(l), None);
    }
}
