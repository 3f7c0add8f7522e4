//! `snaprun snapshot inspect`: a snapshot for humans.

use std::fmt::Write;

use snaprun_snapshot::image::{FileKind, Image, VmaKind};

fn prot(p: u32) -> String {
    let bit = |b: i32, c: char| if p & b as u32 != 0 { c } else { '-' };
    [
        bit(libc::PROT_READ, 'r'),
        bit(libc::PROT_WRITE, 'w'),
        bit(libc::PROT_EXEC, 'x'),
    ]
    .iter()
    .collect()
}

fn kind(k: VmaKind) -> &'static str {
    match k {
        VmaKind::Anon => "anon",
        VmaKind::Heap => "heap",
        VmaKind::Stack => "stack",
        VmaKind::FilePrivate => "file",
        VmaKind::FileShared => "file-shared",
        VmaKind::SharedAnon => "shmem",
        VmaKind::Memfd => "memfd",
        VmaKind::MemfdPrivate => "memfd-private",
        VmaKind::Vdso => "vdso",
        VmaKind::Vvar => "vvar",
        VmaKind::VvarVclock => "vvar",
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The chunks every run references: how many, how many distinct, data,
/// zero and stored bytes.
fn chunks_line(image: &Image) -> String {
    let mut all = 0u64;
    let mut data = 0u64;
    let mut zero = 0u64;
    let mut distinct = std::collections::HashSet::new();
    let runs = image.manifest.processes.iter().flat_map(|p| {
        p.vmas
            .iter()
            .flat_map(|v| v.runs.iter())
            .chain(p.files.iter().filter_map(|f| match &f.kind {
                FileKind::Pipe { data, .. } | FileKind::Deleted { data, .. } => data.as_ref(),
                _ => None,
            }))
    });
    for r in runs {
        for c in &r.chunks {
            all += 1;
            data += c.len;
            match c.digest {
                Some(d) => {
                    distinct.insert(d);
                }
                None => zero += c.len,
            }
        }
    }
    let stored: u64 = distinct
        .iter()
        .filter_map(|d| image.store().chunk_sizes(d))
        .map(|(_, s)| s)
        .sum();
    let root = image
        .root
        .map(|r| format!(", root {}", r.short()))
        .unwrap_or_default();
    format!(
        "store {}{root}: {all} chunks ({} distinct), {} of data, {} zero, {} stored",
        image.dir.display(),
        distinct.len(),
        mib(data),
        mib(zero),
        mib(stored)
    )
}

pub fn summary(image: &Image) -> String {
    let m = &image.manifest;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "snapshot {} (format {}, kernel {}, snaprun {})",
        image.label,
        snaprun_snapshot::image::FORMAT_VERSION,
        m.kernel,
        m.snaprun_version
    );
    let _ = writeln!(s, "{}", chunks_line(image));
    for p in &m.processes {
        let mapped: u64 = p.vmas.iter().map(|v| v.len()).sum();
        let dumped: u64 = p.vmas.iter().map(|v| v.dumped_bytes()).sum();
        let _ = writeln!(s, "\nprocess pid {} ({}) exe {}", p.pid, p.comm, p.exe.path);
        let _ = writeln!(
            s,
            "  ppid {} pgid {} sid {} uid {} gid {} threads {}",
            p.ppid,
            p.pgid,
            p.sid,
            p.creds.uid[0],
            p.creds.gid[0],
            p.threads.len()
        );
        let _ = writeln!(s, "  cwd {} root {} umask {:03o}", p.cwd, p.root, p.umask);
        if let Some(c) = &p.cuda {
            let _ = writeln!(
                s,
                "  cuda: GPU state checkpointed through the driver (CUDA {}.{}{}{}), GPUs [{}]",
                c.driver_api / 1000,
                (c.driver_api % 1000) / 10,
                c.driver
                    .as_ref()
                    .map(|d| format!(", driver {d}"))
                    .unwrap_or_default(),
                if c.was_suspended {
                    ", suspended before"
                } else {
                    ""
                },
                c.gpus.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "  memory: {} vmas, {} mapped, {} dumped",
            p.vmas.len(),
            mib(mapped),
            mib(dumped)
        );
        let _ = writeln!(s, "  vmas:");
        for v in &p.vmas {
            let _ = writeln!(
                s,
                "    {:012x}-{:012x} {} {:<11} {:>10} {}",
                v.start,
                v.end,
                prot(v.prot),
                kind(v.kind),
                if v.runs.is_empty() {
                    "-".to_string()
                } else {
                    mib(v.dumped_bytes())
                },
                v.name
            );
        }
        let _ = writeln!(s, "  fds:");
        for fd in &p.fds {
            let desc = p
                .files
                .iter()
                .find(|f| f.id == fd.file)
                .map(|f| match f.shared {
                    Some(src) => format!(
                        "{} (shared with pid {} fd {})",
                        f.kind.describe(),
                        src.pid,
                        src.fd
                    ),
                    None => f.kind.describe(),
                })
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "    {:>4} {}{}",
                fd.fd,
                desc,
                if fd.cloexec { " (cloexec)" } else { "" }
            );
        }
        if !p.memfds.is_empty() {
            let _ = writeln!(s, "  memfds:");
            for m in &p.memfds {
                let _ = writeln!(
                    s,
                    "    inode {} {:?} size {} mode {:o} seals {:#x} data {}",
                    m.inode,
                    m.name,
                    m.size,
                    m.mode,
                    m.seals,
                    mib(m.runs.iter().map(|r| r.len).sum())
                );
            }
        }
        let pending =
            p.shared_pending.len() + p.threads.iter().map(|t| t.pending.len()).sum::<usize>();
        let _ = writeln!(
            s,
            "  signals: {} handlers set, {} pending",
            p.sigactions.len(),
            pending
        );
    }
    for z in &m.zombies {
        let _ = writeln!(
            s,
            "\nzombie pid {} ppid {} pgid {} sid {} wait status {:#x}",
            z.pid, z.ppid, z.pgid, z.sid, z.exit_status
        );
    }
    s
}
