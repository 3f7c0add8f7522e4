//! Rebuilding the address space inside the stub: unmap the stub's own
//! memory, move the vDSO, map every VMA at its address, fill the dumped
//! pages, then set protections, advice and the mm fields.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::image::{Image, MmFields, ProcessImage, Vma, VmaKind};
use crate::sys::mem::{vm_write, ProcMem};
use crate::sys::remote::{self, Remote, RemoteError, Scratch};

use super::fds::Memfds;
use super::stub::{TASK_SIZE, TRAMPOLINE_LEN};
use super::RestoreError;

const ARCH_MAP_VDSO_64: u64 = 0x2003;
const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;

/// Unmaps everything but the trampoline (the stub's code, libc, stack,
/// vDSO) and maps the vDSO where the snapshot had it.
pub fn clear_and_place_vdso(
    remote: &mut dyn Remote,
    trampoline: u64,
    vmas: &[Vma],
) -> Result<(), RestoreError> {
    let tramp_end = trampoline + TRAMPOLINE_LEN;
    remote.syscall(
        "munmap(below trampoline)",
        libc::SYS_munmap,
        &[0, trampoline],
    )?;
    remote.syscall(
        "munmap(above trampoline)",
        libc::SYS_munmap,
        &[tramp_end, TASK_SIZE - tramp_end],
    )?;
    let Some(vdso) = vmas.iter().find(|v| v.kind == VmaKind::Vdso) else {
        return Ok(());
    };
    // The address arch_prctl takes is not the same on every kernel (the
    // vvar pages and the text moved about): map once, see where the text
    // landed, and if it is off, map again shifted by the difference.
    let pid = remote.pid();
    let map_at = |remote: &mut dyn Remote, addr: u64| -> Result<(), RestoreError> {
        remote.syscall(
            &format!("arch_prctl(ARCH_MAP_VDSO_64, {addr:#x})"),
            libc::SYS_arch_prctl,
            &[ARCH_MAP_VDSO_64, addr],
        )?;
        Ok(())
    };
    map_at(remote, vdso.start)?;
    let now = special_mappings(pid)?;
    let Some(landed) = now
        .iter()
        .find(|(n, _, _)| n == "[vdso]")
        .map(|(_, s, _)| *s)
    else {
        return Err(RestoreError::State {
            pid,
            reason: "arch_prctl(ARCH_MAP_VDSO_64) mapped no [vdso]".into(),
        });
    };
    if landed != vdso.start {
        for (_, s, e) in &now {
            remote.syscall("munmap(vdso)", libc::SYS_munmap, &[*s, e - s])?;
        }
        map_at(
            remote,
            vdso.start.wrapping_sub(landed.wrapping_sub(vdso.start)),
        )?;
    }
    Ok(())
}

/// The vDSO and vvar mappings of `pid`: (name, start, end).
fn special_mappings(pid: i32) -> Result<Vec<(String, u64, u64)>, RestoreError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|source| {
        RestoreError::Io {
            what: format!("reading /proc/{pid}/maps"),
            source,
        }
    })?;
    let mut now = Vec::new();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let range = f.next().unwrap_or("");
        let name = f.nth(4).unwrap_or("");
        if name.starts_with("[vdso]") || name.starts_with("[vvar") {
            if let Some((s, e)) = range.split_once('-') {
                let s = u64::from_str_radix(s, 16).unwrap_or(0);
                let e = u64::from_str_radix(e, 16).unwrap_or(0);
                now.push((name.to_string(), s, e));
            }
        }
    }
    Ok(now)
}

/// Checks that the kernel put the vDSO and vvar pages exactly where the
/// snapshot had them (a vDSO of another size means another kernel).
pub fn check_vdso(pid: i32, vmas: &[Vma]) -> Result<(), RestoreError> {
    let now = special_mappings(pid)?;
    for v in vmas.iter().filter(|v| v.kind.is_special()) {
        if !now
            .iter()
            .any(|(n, s, e)| *n == v.name && *s == v.start && *e == v.end)
        {
            return Err(RestoreError::State {
                pid,
                reason: format!(
                    "{} at {:x}-{:x} in the snapshot, but this kernel's vDSO layout is {:?} \
                     (snapshot taken on another kernel?)",
                    v.name, v.start, v.end, now
                ),
            });
        }
    }
    Ok(())
}

fn open_in_target(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    path: &str,
    flags: i32,
) -> Result<u64, RestoreError> {
    Ok(remote::open(
        remote,
        scratch,
        &format!("open {path}"),
        path,
        flags | libc::O_CLOEXEC,
    )?)
}

/// The protection a VMA is first mapped with: writable when pages must be
/// written into it (set to the real one after).
fn initial_prot(v: &Vma) -> u32 {
    if v.runs.is_empty() {
        v.prot
    } else {
        v.prot | (libc::PROT_READ | libc::PROT_WRITE) as u32
    }
}

/// Maps every VMA of the snapshot (but the kernel's own) at its address.
/// `earlier` holds the processes of the tree already mapped (pid in the
/// restorer's namespace, their VMAs): shared anonymous memory they hold is
/// mapped from them, so that it stays one object.
pub fn map_vmas(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    vmas: &[Vma],
    memfds: &Memfds,
    earlier: &[(i32, &[Vma])],
) -> Result<(), RestoreError> {
    // Shared anonymous objects already created: inode -> (the /proc entry
    // of the process that has it, its first VMA).
    let mut shmem: std::collections::HashMap<u64, (String, &Vma)> =
        std::collections::HashMap::new();
    for (pid, theirs) in earlier {
        for v in theirs.iter().filter(|v| v.kind == VmaKind::SharedAnon) {
            if v.shmem_inode != 0 {
                shmem
                    .entry(v.shmem_inode)
                    .or_insert((format!("/proc/{pid}"), v));
            }
        }
    }
    // The file the previous VMA mapped, still open in the target: a
    // library's VMAs come one after another, so its file is opened once
    // for all of them (one injected open and close, not one per VMA).
    let mut last: Option<(String, i32, u64)> = None;
    let mut open_file = |remote: &mut dyn Remote,
                         scratch: &mut Scratch,
                         path: &str,
                         mode: i32|
     -> Result<u64, RestoreError> {
        if let Some((p, m, fd)) = &last {
            if p == path && *m == mode {
                return Ok(*fd);
            }
        }
        if let Some((_, _, fd)) = last.take() {
            remote.syscall("close", libc::SYS_close, &[fd])?;
        }
        let fd = open_in_target(remote, scratch, path, mode)?;
        last = Some((path.to_string(), mode, fd));
        Ok(fd)
    };
    for v in vmas.iter().filter(|v| !v.kind.is_special()) {
        let mut flags = libc::MAP_FIXED;
        if v.advice.noreserve {
            flags |= libc::MAP_NORESERVE;
        }
        if v.advice.growsdown {
            flags |= libc::MAP_GROWSDOWN;
        }
        let (fd, offset) = match v.kind {
            VmaKind::Anon | VmaKind::Heap | VmaKind::Stack => {
                flags |= libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                (None, 0)
            }
            VmaKind::SharedAnon => match shmem.get(&v.shmem_inode).filter(|_| v.shmem_inode != 0) {
                // Another view of an object already mapped: map that object
                // (through its map_files entry) at the same object offset.
                Some((proc, first)) if v.offset >= first.offset => {
                    flags |= libc::MAP_SHARED;
                    let path = format!("{proc}/map_files/{:x}-{:x}", first.start, first.end);
                    (
                        Some(open_file(remote, scratch, &path, libc::O_RDWR)?),
                        v.offset - first.offset,
                    )
                }
                _ => {
                    shmem
                        .entry(v.shmem_inode)
                        .or_insert(("/proc/self".to_string(), v));
                    flags |= libc::MAP_SHARED | libc::MAP_ANONYMOUS;
                    (None, 0)
                }
            },
            VmaKind::FilePrivate | VmaKind::FileShared => {
                let file = v.file.as_ref().ok_or_else(|| RestoreError::State {
                    pid: remote.pid(),
                    reason: format!("vma {:x}-{:x}: file mapping without a file", v.start, v.end),
                })?;
                let shared = v.kind == VmaKind::FileShared;
                flags |= if shared {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                };
                let mode = if shared && v.prot & libc::PROT_WRITE as u32 != 0 {
                    libc::O_RDWR
                } else {
                    libc::O_RDONLY
                };
                (
                    Some(open_file(remote, scratch, &file.path, mode)?),
                    v.offset,
                )
            }
            VmaKind::Memfd | VmaKind::MemfdPrivate => {
                flags |= if v.kind == VmaKind::Memfd {
                    libc::MAP_SHARED
                } else {
                    libc::MAP_PRIVATE
                };
                let fd = memfds
                    .get(v.shmem_inode)
                    .ok_or_else(|| RestoreError::State {
                        pid: remote.pid(),
                        reason: format!(
                            "vma {:x}-{:x}: memfd inode {} is not in the snapshot",
                            v.start, v.end, v.shmem_inode
                        ),
                    })?;
                (Some(fd), v.offset)
            }
            VmaKind::Vdso | VmaKind::Vvar | VmaKind::VvarVclock => unreachable!("filtered"),
        };
        let what = format!("mmap {:x}-{:x} {}", v.start, v.end, v.name);
        let r = remote.syscall(
            &what,
            libc::SYS_mmap,
            &[
                v.start,
                v.len(),
                initial_prot(v) as u64,
                flags as u64,
                fd.unwrap_or(u64::MAX),
                offset,
            ],
        );
        if r? != v.start {
            return Err(RestoreError::State {
                pid: remote.pid(),
                reason: format!("{what}: mapped at another address"),
            });
        }
    }
    // A memfd's fd stays open until every user of it is restored; the last
    // file's is closed here.
    if let Some((_, _, fd)) = last {
        remote.syscall("close", libc::SYS_close, &[fd])?;
    }
    Ok(())
}

/// Below this many bytes of pages, one thread writes them.
const PARALLEL_MIN_BYTES: u64 = 32 << 20;
/// The most restorer threads that write pages at once.
const MAX_FILL_THREADS: usize = 8;

/// How many threads write pages: `SNAPRUN_RESTORE_THREADS` when set (for
/// benchmarks), else one per core up to [`MAX_FILL_THREADS`].
fn fill_threads() -> usize {
    match std::env::var("SNAPRUN_RESTORE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => n.clamp(1, 64),
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_FILL_THREADS),
    }
}

/// Writes every run's bytes into the target, each read (and its digest
/// checked) from the image. Large images are written by several threads at
/// once (`process_vm_writev` needs no ptrace stop, and reading, hashing and
/// the target's page faults all scale with cores); the first error stops
/// them all and is returned.
pub fn fill_pages(
    remote: &mut dyn Remote,
    image: &Image,
    vmas: &[Vma],
) -> Result<u64, RestoreError> {
    let jobs: Vec<(u64, &crate::image::PageRun)> = vmas
        .iter()
        .flat_map(|v| v.runs.iter().map(move |r| (v.start + r.vma_offset, r)))
        .collect();
    let total: u64 = jobs.iter().map(|(_, r)| r.len).sum();
    let threads = fill_threads();
    if total < PARALLEL_MIN_BYTES || threads < 2 {
        let mut buf = Vec::new();
        for (addr, run) in jobs {
            image.read_run(run, &mut buf)?;
            remote.write_mem(addr, &buf)?;
        }
        return Ok(total);
    }
    let pid = remote.pid();
    let mem = ProcMem::open(pid).map_err(|source| RestoreError::Io {
        what: format!("opening /proc/{pid}/mem"),
        source,
    })?;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<RestoreError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = Vec::new();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(addr, run)) = jobs.get(i) else {
                        break;
                    };
                    let r = image
                        .read_run(run, &mut buf)
                        .map_err(RestoreError::from)
                        .and_then(|()| {
                            // /proc/PID/mem also reaches read-only mappings.
                            vm_write(pid, addr, &buf)
                                .or_else(|_| mem.write_all_at(addr, &buf))
                                .map_err(|source| {
                                    RestoreError::Remote(RemoteError::Memory {
                                        pid,
                                        addr,
                                        len: buf.len(),
                                        source,
                                    })
                                })
                        });
                    if let Err(e) = r {
                        failed.store(true, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Final protections and per-VMA attributes.
pub fn finish_vmas(remote: &mut dyn Remote, vmas: &[Vma]) -> Result<(), RestoreError> {
    for v in vmas.iter().filter(|v| !v.kind.is_special()) {
        let range = format!("{:x}-{:x}", v.start, v.end);
        if initial_prot(v) != v.prot {
            remote.syscall(
                &format!("mprotect {range}"),
                libc::SYS_mprotect,
                &[v.start, v.len(), v.prot as u64],
            )?;
        }
        let a = &v.advice;
        for (on, advice, name, required) in [
            (a.dontfork, libc::MADV_DONTFORK, "MADV_DONTFORK", true),
            (a.dontdump, libc::MADV_DONTDUMP, "MADV_DONTDUMP", true),
            (a.wipeonfork, libc::MADV_WIPEONFORK, "MADV_WIPEONFORK", true),
            (a.hugepage, libc::MADV_HUGEPAGE, "MADV_HUGEPAGE", false),
            (
                a.nohugepage,
                libc::MADV_NOHUGEPAGE,
                "MADV_NOHUGEPAGE",
                false,
            ),
            (a.mergeable, libc::MADV_MERGEABLE, "MADV_MERGEABLE", false),
        ] {
            if !on {
                continue;
            }
            let what = format!("madvise {range} {name}");
            let r =
                remote.raw_syscall(&what, libc::SYS_madvise, &[v.start, v.len(), advice as u64])?;
            if r < 0 {
                if required {
                    remote.check(&what, r)?;
                }
                tracing::warn!(range = %range, advice = name, errno = -r, "advice not applied");
            }
        }
        if a.locked {
            remote.syscall(
                &format!("mlock {range}"),
                libc::SYS_mlock,
                &[v.start, v.len()],
            )?;
        }
    }
    Ok(())
}

/// Sets the mm fields (code/data/brk/stack/args/env bounds, auxv) and the
/// exe link with `PR_SET_MM_MAP`.
pub fn set_mm(
    remote: &mut dyn Remote,
    scratch: &mut Scratch,
    p: &ProcessImage,
) -> Result<(), RestoreError> {
    let exe_fd = open_in_target(remote, scratch, &p.exe.path, libc::O_RDONLY)?;
    let mm: &MmFields = &p.mm;
    let auxv: Vec<u8> = mm.auxv.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let auxv_addr = scratch.put(remote, &auxv)?;
    let mut map = Vec::with_capacity(104);
    for w in [
        mm.start_code,
        mm.end_code,
        mm.start_data,
        mm.end_data,
        mm.start_brk,
        mm.brk,
        mm.start_stack,
        mm.arg_start,
        mm.arg_end,
        mm.env_start,
        mm.env_end,
        auxv_addr,
    ] {
        map.extend_from_slice(&w.to_ne_bytes());
    }
    map.extend_from_slice(&(auxv.len() as u32).to_ne_bytes());
    map.extend_from_slice(&(exe_fd as u32).to_ne_bytes());
    debug_assert_eq!(map.len(), 104);
    let map_addr = scratch.put(remote, &map)?;
    let r = remote.syscall(
        "prctl(PR_SET_MM_MAP)",
        libc::SYS_prctl,
        &[PR_SET_MM, PR_SET_MM_MAP, map_addr, map.len() as u64, 0],
    );
    remote.syscall("close exe", libc::SYS_close, &[exe_fd])?;
    scratch.reset();
    r?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::VmaAdvice;
    use crate::sys::remote::fake::FakeRemote;

    fn vma(start: u64, prot: u32, kind: VmaKind, runs: usize) -> Vma {
        Vma {
            start,
            end: start + 0x2000,
            prot,
            kind,
            file: None,
            offset: 0,
            name: String::new(),
            advice: VmaAdvice::default(),
            shmem_inode: 0,
            runs: (0..runs)
                .map(|i| crate::image::PageRun {
                    vma_offset: i as u64 * 0x1000,
                    len: 0x1000,
                    chunks: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn read_only_vma_with_data_is_mapped_writable_then_protected() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        fake.results
            .insert("mmap 10000-12000 ".into(), vec![0x10000]);
        fake.results
            .insert("mmap 20000-22000 ".into(), vec![0x20000]);
        let vmas = [
            vma(0x10000, libc::PROT_READ as u32, VmaKind::Anon, 1),
            vma(0x20000, 0, VmaKind::Anon, 0),
        ];
        map_vmas(&mut fake, &mut scratch, &vmas, &Memfds::default(), &[]).unwrap();
        finish_vmas(&mut fake, &vmas).unwrap();
        let mmaps: Vec<_> = fake
            .calls
            .iter()
            .filter(|c| c.1 == libc::SYS_mmap)
            .collect();
        assert_eq!(mmaps[0].2[2], (libc::PROT_READ | libc::PROT_WRITE) as u64);
        assert_eq!(mmaps[1].2[2], 0, "PROT_NONE without data is mapped as is");
        let mprotects: Vec<_> = fake
            .calls
            .iter()
            .filter(|c| c.1 == libc::SYS_mprotect)
            .collect();
        assert_eq!(mprotects.len(), 1);
        assert_eq!(
            mprotects[0].2,
            vec![0x10000, 0x2000, libc::PROT_READ as u64]
        );
    }

    #[test]
    fn mapping_at_another_address_is_an_error() {
        let mut fake = FakeRemote::default();
        let mut scratch = Scratch::new(0x9000_0000, 0x10000);
        fake.results
            .insert("mmap 10000-12000 ".into(), vec![0x50000]);
        let err = map_vmas(
            &mut fake,
            &mut scratch,
            &[vma(0x10000, 3, VmaKind::Anon, 0)],
            &Memfds::default(),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("another address"), "{err}");
    }
}
