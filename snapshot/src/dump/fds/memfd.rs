//! memfds: fds and mappings of one memfd name it by inode; the memfd
//! itself (name, size, mode, seals and the pages that hold data) is dumped
//! once, into `ProcessImage::memfds`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::image::{Fd, FileKind, ImageWriter, Memfd, OpenFile, PageRun};
use crate::sys::proc::{FdInfo, MapEntry};
use crate::sys::PAGE_SIZE;

use super::super::memory::{data_pages, group_pages, nonzero_runs};
use super::super::DumpError;

/// The most data (pages that are not holes) kept of one memfd.
pub const MAX_MEMFD_DATA: u64 = 1 << 30;

const TMPFS_MAGIC: i64 = 0x0102_1994;
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;

/// The name in a memfd's link or maps name, `/memfd:NAME (deleted)`.
pub fn memfd_name(link: &str) -> Option<&str> {
    link.strip_prefix("/memfd:")?.strip_suffix(" (deleted)")
}

/// The fd `fd`, whose link reads like a memfd's: a `Memfd` if it is one
/// (on the kernel's internal tmpfs), `None` if it is some other file.
pub(super) fn memfd_fd(
    pid: i32,
    fd: i32,
    link_path: &str,
    meta: &std::fs::Metadata,
    info: &FdInfo,
) -> Result<Option<FileKind>, DumpError> {
    let f = File::open(link_path).map_err(|source| DumpError::Proc {
        pid,
        path: link_path.to_string(),
        source,
    })?;
    // SAFETY: statfs is plain data; fstatfs fills the zeroed local.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatfs on a file we own, writing into the live local.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } < 0 {
        return Err(DumpError::Fd {
            pid,
            fd,
            reason: format!("fstatfs: {}", std::io::Error::last_os_error()),
        });
    }
    match st.f_type {
        TMPFS_MAGIC => Ok(Some(FileKind::Memfd {
            inode: meta.ino(),
            pos: info.pos,
        })),
        HUGETLBFS_MAGIC => Err(DumpError::Unsupported {
            pid,
            fd,
            what: "hugetlb memfd".into(),
        }),
        _ => Ok(None),
    }
}

/// Every memfd that `files` or `maps` refer to, once each, with its
/// content.
pub fn dump_memfds(
    pid: i32,
    files: &[OpenFile],
    fds: &[Fd],
    maps: &[MapEntry],
    writer: &mut ImageWriter,
) -> Result<Vec<Memfd>, DumpError> {
    // (inode, a path that opens it, the link or maps name).
    let mut sources: Vec<(u64, String, String)> = Vec::new();
    for f in files {
        let FileKind::Memfd { inode, .. } = f.kind else {
            continue;
        };
        let Some(fd) = fds.iter().find(|d| d.file == f.id) else {
            continue;
        };
        let path = format!("/proc/{pid}/fd/{}", fd.fd);
        let link = std::fs::read_link(&path).map_err(|source| DumpError::Proc {
            pid,
            path: path.clone(),
            source,
        })?;
        sources.push((inode, path, link.to_string_lossy().into_owned()));
    }
    for m in maps.iter().filter(|m| memfd_name(&m.name).is_some()) {
        let path = format!("/proc/{pid}/map_files/{}", m.range());
        sources.push((m.inode, path, m.name.clone()));
    }
    let mut out: Vec<Memfd> = Vec::new();
    for (inode, path, link) in sources {
        if out.iter().any(|m| m.inode == inode) {
            continue;
        }
        out.push(dump_one(pid, inode, &path, &link, writer)?);
    }
    Ok(out)
}

fn dump_one(
    pid: i32,
    inode: u64,
    path: &str,
    link: &str,
    writer: &mut ImageWriter,
) -> Result<Memfd, DumpError> {
    let proc_err = |source| DumpError::Proc {
        pid,
        path: path.to_string(),
        source,
    };
    let state = |reason: String| DumpError::State {
        pid,
        reason: format!("memfd {link} (inode {inode}): {reason}"),
    };
    let f = File::open(path).map_err(proc_err)?;
    let meta = f.metadata().map_err(proc_err)?;
    // SAFETY: fcntl(F_GET_SEALS) on a file we own; no memory involved.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(state(format!(
            "F_GET_SEALS: {}",
            std::io::Error::last_os_error()
        )));
    }
    let size = meta.size();
    let pages = size.div_ceil(PAGE_SIZE);
    let data = data_pages(&f, 0, pages);
    if data.len() as u64 * PAGE_SIZE > MAX_MEMFD_DATA {
        return Err(DumpError::UnsupportedProcess {
            pid,
            what: format!(
                "memfd {link} with {} bytes of data (at most {MAX_MEMFD_DATA} are kept)",
                data.len() as u64 * PAGE_SIZE
            ),
        });
    }
    let mut runs: Vec<PageRun> = Vec::new();
    let mut buf = Vec::new();
    for (first, count) in group_pages(&data) {
        buf.clear();
        buf.resize((count * PAGE_SIZE) as usize, 0);
        let mut done = 0;
        // The last page may end past the file's size: what is beyond
        // reads as zeros.
        while done < buf.len() {
            let n = f
                .read_at(&mut buf[done..], first * PAGE_SIZE + done as u64)
                .map_err(proc_err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        for (p, n) in nonzero_runs(&buf, true) {
            let bytes = &buf[p * PAGE_SIZE as usize..(p + n) * PAGE_SIZE as usize];
            let mut run = writer.add(bytes)?;
            run.vma_offset = (first + p as u64) * PAGE_SIZE;
            runs.push(run);
        }
    }
    Ok(Memfd {
        inode,
        name: memfd_name(link).unwrap_or(link).to_string(),
        size,
        mode: meta.mode() & 0o7777,
        seals: seals as u32,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memfd_names() {
        assert_eq!(memfd_name("/memfd:a b (deleted)"), Some("a b"));
        assert_eq!(memfd_name("/memfd: (deleted)"), Some(""));
        assert_eq!(memfd_name("/memfd:x"), None);
        assert_eq!(memfd_name("/tmp/memfd:x (deleted)"), None);
    }
}
