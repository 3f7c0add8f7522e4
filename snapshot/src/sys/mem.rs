//! Another process's memory: `/proc/PID/mem`, `process_vm_writev`, and
//! `/proc/PID/pagemap`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::PAGE_SIZE;

/// `/proc/PID/mem`, opened read-write. Reads and writes through it use
/// `FOLL_FORCE`, so they reach read-only and PROT_NONE private mappings
/// that `process_vm_*` refuse.
pub struct ProcMem {
    file: File,
}

impl ProcMem {
    pub fn open(pid: i32) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))?;
        Ok(Self { file })
    }

    pub fn read_exact_at(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, addr)
    }

    pub fn write_all_at(&self, addr: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, addr)
    }
}

/// Runs `op(done)` (one `process_vm_*` call for the bytes from `done` on)
/// until `len` bytes are moved; `what` names the call when it moves none.
fn vm_transfer(len: usize, what: &str, mut op: impl FnMut(usize) -> isize) -> io::Result<()> {
    let mut done = 0usize;
    while done < len {
        let n = op(done);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{what} moved nothing"),
            ));
        }
        done += n as usize;
    }
    Ok(())
}

fn remote_iov(addr: u64, done: usize, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: (addr + done as u64) as *mut libc::c_void,
        iov_len: len - done,
    }
}

/// Writes `data` at `addr` in `pid` with `process_vm_writev` (the target's
/// mapping must be writable).
pub fn vm_write(pid: i32, addr: u64, data: &[u8]) -> io::Result<()> {
    vm_transfer(data.len(), "process_vm_writev", |done| {
        let local = libc::iovec {
            iov_base: data[done..].as_ptr() as *mut libc::c_void,
            iov_len: data.len() - done,
        };
        let remote = remote_iov(addr, done, data.len());
        // SAFETY: one local iovec over a live slice (only read by the
        // kernel); the remote iovec is an address in another process, which
        // the kernel checks.
        unsafe { libc::process_vm_writev(pid, &local, 1, &remote, 1, 0) }
    })
}

/// Reads `buf.len()` bytes at `addr` in `pid` with `process_vm_readv` (the
/// range must be readable).
pub fn vm_read(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    let len = buf.len();
    vm_transfer(len, "process_vm_readv", |done| {
        let local = libc::iovec {
            iov_base: buf[done..].as_mut_ptr().cast(),
            iov_len: len - done,
        };
        let remote = remote_iov(addr, done, len);
        // SAFETY: one local iovec over the unfilled part of a live, mutable
        // buffer; the remote iovec is an address in another process, which
        // the kernel checks.
        unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) }
    })
}

/// One `/proc/PID/pagemap` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageEntry(pub u64);

impl PageEntry {
    pub fn present(self) -> bool {
        self.0 & (1 << 63) != 0
    }
    pub fn swapped(self) -> bool {
        self.0 & (1 << 62) != 0
    }
    /// The page is a file page or shared anonymous memory (not a private,
    /// copied-on-write page).
    pub fn file_or_shared(self) -> bool {
        self.0 & (1 << 61) != 0
    }
    /// The page holds private (anonymous) data of this process: for a
    /// private file mapping, a page copied on write.
    pub fn private_data(self) -> bool {
        (self.present() && !self.file_or_shared()) || self.swapped()
    }
}

pub struct Pagemap {
    file: File,
}

impl Pagemap {
    pub fn open(pid: i32) -> io::Result<Self> {
        Ok(Self {
            file: File::open(format!("/proc/{pid}/pagemap"))?,
        })
    }

    /// Entries for the pages of `[start, end)`.
    pub fn read(&self, start: u64, end: u64) -> io::Result<Vec<PageEntry>> {
        let pages = ((end - start) / PAGE_SIZE) as usize;
        let mut raw = vec![0u8; pages * 8];
        self.file.read_exact_at(&mut raw, start / PAGE_SIZE * 8)?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| PageEntry(u64::from_ne_bytes(c.try_into().expect("8 bytes"))))
            .collect())
    }
}
