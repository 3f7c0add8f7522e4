//! The address space: which VMAs exist, which of their pages hold data
//! that is not elsewhere (a file), and those pages' bytes.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};

use crate::image::{FileRef, ImageWriter, Vma, VmaAdvice, VmaKind};
use crate::sys::mem::{Pagemap, ProcMem};
use crate::sys::proc::MapEntry;
use crate::sys::PAGE_SIZE;

use super::DumpError;

/// Pages per run at most: small enough that a restore (and, later, a lazy
/// fault) does not wait on much it does not need.
pub const RUN_PAGES: u64 = 256;

/// Classifies a mapping, or says why snaprun cannot restore it.
pub fn classify(m: &MapEntry) -> Result<Option<VmaKind>, String> {
    let name = m.name.as_str();
    let kind = match name {
        "[vsyscall]" => return Ok(None),
        "[vdso]" => VmaKind::Vdso,
        "[vvar]" => VmaKind::Vvar,
        "[vvar_vclock]" => VmaKind::VvarVclock,
        "[heap]" => VmaKind::Heap,
        "[stack]" => VmaKind::Stack,
        _ if m.shared => {
            if name == "/dev/zero (deleted)" || name.starts_with("[anon_shmem:") {
                VmaKind::SharedAnon
            } else if is_memfd(m)? {
                VmaKind::Memfd
            } else if name.starts_with("/SYSV") {
                return Err(format!(
                    "System V shared memory mapping {} ({name})",
                    m.range()
                ));
            } else if name.is_empty() || name.starts_with('[') {
                return Err(format!("special shared mapping {} {name:?}", m.range()));
            } else if name.ends_with(" (deleted)") {
                return Err(format!(
                    "shared mapping {} of deleted file {name}",
                    m.range()
                ));
            } else {
                VmaKind::FileShared
            }
        }
        "" => VmaKind::Anon,
        _ if name.starts_with("[anon:") => VmaKind::Anon,
        _ if name.starts_with('[') => {
            return Err(format!("special mapping {} {name}", m.range()));
        }
        _ if is_memfd(m)? => VmaKind::MemfdPrivate,
        _ if name.ends_with(" (deleted)") => {
            return Err(format!("mapping {} of deleted file {name}", m.range()));
        }
        _ => VmaKind::FilePrivate,
    };
    if !kind.is_special() && (m.has_flag("io") || m.has_flag("pf")) {
        return Err(format!("device (I/O) mapping {} {name}", m.range()));
    }
    Ok(Some(kind))
}

/// Whether a mapping maps a memfd (`/memfd:NAME (deleted)`); hugetlb
/// memfds are refused.
fn is_memfd(m: &MapEntry) -> Result<bool, String> {
    if !(m.name.starts_with("/memfd:") && m.name.ends_with(" (deleted)")) {
        return Ok(false);
    }
    if m.has_flag("ht") {
        return Err(format!("hugetlb memfd mapping {} ({})", m.range(), m.name));
    }
    Ok(true)
}

pub fn advice(m: &MapEntry) -> VmaAdvice {
    VmaAdvice {
        growsdown: m.has_flag("gd"),
        hugepage: m.has_flag("hg"),
        nohugepage: m.has_flag("nh"),
        dontfork: m.has_flag("dc"),
        dontdump: m.has_flag("dd"),
        wipeonfork: m.has_flag("wf"),
        locked: m.has_flag("lo"),
        noreserve: m.has_flag("nr"),
        mergeable: m.has_flag("mg"),
    }
}

pub fn prot(m: &MapEntry) -> u32 {
    let mut p = 0;
    if m.read {
        p |= libc::PROT_READ;
    }
    if m.write {
        p |= libc::PROT_WRITE;
    }
    if m.exec {
        p |= libc::PROT_EXEC;
    }
    p as u32
}

pub fn file_ref(path: &str, meta: &std::fs::Metadata) -> FileRef {
    FileRef {
        path: path.to_string(),
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
    }
}

/// Which pages of a VMA to dump, as page indexes, before zero-filtering.
fn candidate_pages(
    pid: i32,
    m: &MapEntry,
    kind: VmaKind,
    pagemap: &Pagemap,
) -> Result<Vec<u64>, DumpError> {
    let proc_err = |path: String| move |source| DumpError::Proc { pid, path, source };
    match kind {
        VmaKind::Anon
        | VmaKind::Heap
        | VmaKind::Stack
        | VmaKind::FilePrivate
        | VmaKind::MemfdPrivate => {
            let entries = pagemap
                .read(m.start, m.end)
                .map_err(proc_err(format!("/proc/{pid}/pagemap")))?;
            let file = matches!(kind, VmaKind::FilePrivate | VmaKind::MemfdPrivate);
            Ok(entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    if file {
                        e.private_data()
                    } else {
                        e.present() || e.swapped()
                    }
                })
                .map(|(i, _)| i as u64)
                .collect())
        }
        VmaKind::SharedAnon => {
            // The shmem object may hold pages this process never touched:
            // ask the object, not the page tables.
            let path = format!("/proc/{pid}/map_files/{}", m.range());
            let f = File::open(&path).map_err(proc_err(path.clone()))?;
            let pages = (m.end - m.start) / PAGE_SIZE;
            Ok(data_pages(&f, m.offset, pages))
        }
        _ => Ok(Vec::new()),
    }
}

/// Pages in `[offset, offset + pages)` of a file that hold data, by
/// `SEEK_DATA`/`SEEK_HOLE`; all of them where those are not supported.
pub(crate) fn data_pages(f: &File, offset: u64, pages: u64) -> Vec<u64> {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    let end = offset + pages * PAGE_SIZE;
    let mut out = Vec::new();
    let mut pos = offset;
    while pos < end {
        // SAFETY: lseek on a file we own; no memory involved.
        let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                break;
            }
            return (0..pages).collect();
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        let first = (data as u64).max(offset) / PAGE_SIZE * PAGE_SIZE;
        let mut p = first;
        while p < hole {
            out.push((p - offset) / PAGE_SIZE);
            p += PAGE_SIZE;
        }
        pos = hole.max(pos + PAGE_SIZE);
    }
    out
}

/// Groups sorted page indexes into contiguous ranges of at most
/// [`RUN_PAGES`] pages: `(first, count)`.
pub fn group_pages(pages: &[u64]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &p in pages {
        match out.last_mut() {
            Some((first, n)) if *first + *n == p && *n < RUN_PAGES => *n += 1,
            _ => out.push((p, 1)),
        }
    }
    out
}

/// Splits a buffer of whole pages into runs of consecutive pages to store,
/// leaving out all-zero pages when `skip_zero`: `(first page, count)`.
pub fn nonzero_runs(buf: &[u8], skip_zero: bool) -> Vec<(usize, usize)> {
    let pages = buf.len() / PAGE_SIZE as usize;
    let mut out: Vec<(usize, usize)> = Vec::new();
    for i in 0..pages {
        let page = &buf[i * PAGE_SIZE as usize..(i + 1) * PAGE_SIZE as usize];
        if skip_zero && page.iter().all(|&b| b == 0) {
            continue;
        }
        match out.last_mut() {
            Some((first, n)) if *first + *n == i => *n += 1,
            _ => out.push((i, 1)),
        }
    }
    out
}

/// Dumps one mapping: its description and the pages that must be stored.
pub fn dump_vma(
    pid: i32,
    m: &MapEntry,
    kind: VmaKind,
    mem: &ProcMem,
    pagemap: &Pagemap,
    writer: &mut ImageWriter,
) -> Result<Vma, DumpError> {
    let file = match kind {
        VmaKind::FilePrivate | VmaKind::FileShared => {
            let path = format!("/proc/{pid}/map_files/{}", m.range());
            let meta = std::fs::metadata(&path).map_err(|source| DumpError::Proc {
                pid,
                path: path.clone(),
                source,
            })?;
            Some(file_ref(&m.name, &meta))
        }
        _ => None,
    };
    let mut runs = Vec::new();
    let skip_zero = !matches!(kind, VmaKind::FilePrivate | VmaKind::MemfdPrivate);
    let mut buf = Vec::new();
    for (first, count) in group_pages(&candidate_pages(pid, m, kind, pagemap)?) {
        buf.resize((count * PAGE_SIZE) as usize, 0);
        let addr = m.start + first * PAGE_SIZE;
        read_pages(pid, m, kind, mem, addr, &mut buf)?;
        for (p, n) in nonzero_runs(&buf, skip_zero) {
            let bytes = &buf[p * PAGE_SIZE as usize..(p + n) * PAGE_SIZE as usize];
            runs.push(writer.add_at((first + p as u64) * PAGE_SIZE, bytes)?);
        }
    }
    Ok(Vma {
        start: m.start,
        end: m.end,
        prot: prot(m),
        kind,
        file,
        offset: m.offset,
        name: m.name.clone(),
        advice: advice(m),
        shmem_inode: if matches!(
            kind,
            VmaKind::SharedAnon | VmaKind::Memfd | VmaKind::MemfdPrivate
        ) {
            m.inode
        } else {
            0
        },
        runs,
    })
}

fn read_pages(
    pid: i32,
    m: &MapEntry,
    kind: VmaKind,
    mem: &ProcMem,
    addr: u64,
    buf: &mut [u8],
) -> Result<(), DumpError> {
    let res = if kind == VmaKind::SharedAnon {
        // Read the object itself: pages not mapped here are not in the
        // page tables, and reading through them would allocate.
        let path = format!("/proc/{pid}/map_files/{}", m.range());
        File::open(&path).and_then(|f| f.read_exact_at(buf, m.offset + (addr - m.start)))
    } else if m.read {
        // process_vm_readv is the fast path; /proc/PID/mem (FOLL_FORCE)
        // also reaches what it refuses.
        crate::sys::mem::vm_read(pid, addr, buf).or_else(|_| mem.read_exact_at(addr, buf))
    } else {
        mem.read_exact_at(addr, buf)
    };
    res.map_err(|source| DumpError::Memory {
        pid,
        start: addr,
        end: addr + buf.len() as u64,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, shared: bool) -> MapEntry {
        MapEntry {
            start: 0x1000,
            end: 0x3000,
            read: true,
            write: true,
            exec: false,
            shared,
            offset: 0,
            dev: (0, 0),
            inode: 0,
            name: name.into(),
            vm_flags: vec![],
        }
    }

    #[test]
    fn classifies_mappings() {
        assert_eq!(classify(&entry("", false)), Ok(Some(VmaKind::Anon)));
        assert_eq!(
            classify(&entry("[anon:glibc]", false)),
            Ok(Some(VmaKind::Anon))
        );
        assert_eq!(classify(&entry("[heap]", false)), Ok(Some(VmaKind::Heap)));
        assert_eq!(classify(&entry("[vsyscall]", false)), Ok(None));
        assert_eq!(
            classify(&entry("/lib/x.so", false)),
            Ok(Some(VmaKind::FilePrivate))
        );
        assert_eq!(
            classify(&entry("/data/f", true)),
            Ok(Some(VmaKind::FileShared))
        );
        assert_eq!(
            classify(&entry("/dev/zero (deleted)", true)),
            Ok(Some(VmaKind::SharedAnon))
        );
        assert_eq!(
            classify(&entry("/memfd:x (deleted)", true)),
            Ok(Some(VmaKind::Memfd))
        );
        assert_eq!(
            classify(&entry("/memfd:x (deleted)", false)),
            Ok(Some(VmaKind::MemfdPrivate))
        );
        let mut huge = entry("/memfd:x (deleted)", true);
        huge.vm_flags = vec!["ht".into()];
        let err = classify(&huge).unwrap_err();
        assert!(
            err.contains("hugetlb") && err.contains("1000-3000"),
            "{err}"
        );
        assert!(classify(&entry("/tmp/gone (deleted)", false)).is_err());
        let mut io = entry("/dev/mem", true);
        io.vm_flags = vec!["io".into()];
        assert!(classify(&io).is_err());
    }

    #[test]
    fn groups_pages_into_bounded_runs() {
        assert_eq!(
            group_pages(&[0, 1, 2, 5, 6, 9]),
            vec![(0, 3), (5, 2), (9, 1)]
        );
        let many: Vec<u64> = (0..RUN_PAGES + 3).collect();
        assert_eq!(group_pages(&many), vec![(0, RUN_PAGES), (RUN_PAGES, 3)]);
    }

    #[test]
    fn zero_pages_are_left_out_only_when_asked() {
        let p = PAGE_SIZE as usize;
        let mut buf = vec![0u8; 4 * p];
        buf[p] = 1;
        buf[3 * p + 10] = 2;
        assert_eq!(nonzero_runs(&buf, true), vec![(1, 1), (3, 1)]);
        assert_eq!(nonzero_runs(&buf, false), vec![(0, 4)]);
    }
}
