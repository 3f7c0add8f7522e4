//! userfaultfd: the kernel's structs and ioctls (`linux/userfaultfd.h`),
//! with their sizes and numbers asserted, and [`Uffd`], an owned uffd with
//! the calls the pager and the restore make on it.
//!
//! The uffd is bound to the memory of the process that created it, not to
//! the one that holds it: restore creates it inside the target (an injected
//! `userfaultfd()`), takes it with `pidfd_getfd`, and every ioctl here, made
//! from snaprun, acts on the target's memory.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::fill::{Fill, Outcome};

/// `UFFD_API`: the API version `UFFDIO_API` is asked for.
pub const UFFD_API: u64 = 0xaa;

pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMAP: u64 = 1 << 2;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// The events a lazy restore asks for: a child's memory (fork), moved
/// (mremap), dropped (madvise DONTNEED/REMOVE) and unmapped ranges.
pub const PAGER_FEATURES: u64 = UFFD_FEATURE_EVENT_FORK
    | UFFD_FEATURE_EVENT_REMAP
    | UFFD_FEATURE_EVENT_REMOVE
    | UFFD_FEATURE_EVENT_UNMAP;

pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMAP: u8 = 0x14;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;

/// `_IOC(dir, 0xAA, nr, size)` as x86_64 encodes it.
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xaa << 8) | nr
}
const IOC_WRITE_READ: u64 = 3;
const IOC_READ: u64 = 2;

pub const UFFDIO_API: u64 = ioc(IOC_WRITE_READ, 0x3f, size_of::<UffdioApi>());
pub const UFFDIO_REGISTER: u64 = ioc(IOC_WRITE_READ, 0x00, size_of::<UffdioRegister>());
pub const UFFDIO_WAKE: u64 = ioc(IOC_READ, 0x02, size_of::<UffdioRange>());
pub const UFFDIO_COPY: u64 = ioc(IOC_WRITE_READ, 0x03, size_of::<UffdioCopy>());
pub const UFFDIO_ZEROPAGE: u64 = ioc(IOC_WRITE_READ, 0x04, size_of::<UffdioZeropage>());

// The numbers `linux/userfaultfd.h` gives on x86_64.
const _: () = assert!(UFFDIO_API == 0xc018_aa3f);
const _: () = assert!(UFFDIO_REGISTER == 0xc020_aa00);
const _: () = assert!(UFFDIO_WAKE == 0x8010_aa02);
const _: () = assert!(UFFDIO_COPY == 0xc028_aa03);
const _: () = assert!(UFFDIO_ZEROPAGE == 0xc020_aa04);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdioApi {
    pub api: u64,
    pub features: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdioRange {
    pub start: u64,
    pub len: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdioRegister {
    pub range: UffdioRange,
    pub mode: u64,
    pub ioctls: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdioCopy {
    pub dst: u64,
    pub src: u64,
    pub len: u64,
    pub mode: u64,
    /// Bytes copied, or a negative errno.
    pub copy: i64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdioZeropage {
    pub range: UffdioRange,
    pub mode: u64,
    /// Bytes zeroed, or a negative errno.
    pub zeropage: i64,
}

/// `struct uffd_msg` (packed in the kernel; every field is naturally
/// aligned, so `repr(C)` lays it out the same): the event, then 24 bytes
/// whose meaning depends on it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UffdMsg {
    pub event: u8,
    pub reserved1: u8,
    pub reserved2: u16,
    pub reserved3: u32,
    pub arg: [u64; 3],
}

const _: () = assert!(size_of::<UffdioApi>() == 24);
const _: () = assert!(size_of::<UffdioRange>() == 16);
const _: () = assert!(size_of::<UffdioRegister>() == 32);
const _: () = assert!(size_of::<UffdioCopy>() == 40);
const _: () = assert!(size_of::<UffdioZeropage>() == 32);
const _: () = assert!(size_of::<UffdMsg>() == 32);

/// One message read from a uffd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A thread touched a missing page at `address`.
    Fault {
        address: u64,
    },
    /// The process forked: `ufd` is a new uffd, in the reader's fd table,
    /// for the child's memory.
    Fork {
        ufd: i32,
    },
    /// `mremap` moved `[from, from + len)` to `to`.
    Remap {
        from: u64,
        to: u64,
        len: u64,
    },
    /// `madvise(MADV_DONTNEED/REMOVE)` dropped the pages of `[start, end)`.
    Remove {
        start: u64,
        end: u64,
    },
    /// `[start, end)` was unmapped.
    Unmap {
        start: u64,
        end: u64,
    },
    Unknown(u8),
}

impl UffdMsg {
    pub fn event(&self) -> Event {
        let [a, b, c] = self.arg;
        match self.event {
            // pagefault: flags, address, feat.
            UFFD_EVENT_PAGEFAULT => Event::Fault { address: b },
            UFFD_EVENT_FORK => Event::Fork {
                ufd: (a & 0xffff_ffff) as u32 as i32,
            },
            UFFD_EVENT_REMAP => Event::Remap {
                from: a,
                to: b,
                len: c,
            },
            UFFD_EVENT_REMOVE => Event::Remove { start: a, end: b },
            UFFD_EVENT_UNMAP => Event::Unmap { start: a, end: b },
            other => Event::Unknown(other),
        }
    }
}

/// An owned userfaultfd.
#[derive(Debug)]
pub struct Uffd {
    fd: OwnedFd,
}

impl Uffd {
    pub fn new(fd: OwnedFd) -> Self {
        Self { fd }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// `ioctl(fd, req, arg)`: the raw result.
    fn ioctl<T>(&self, req: u64, arg: &mut T) -> io::Result<()> {
        // SAFETY: `arg` is the struct `req` takes (the request numbers and
        // struct sizes are asserted above), a live exclusive borrow for the
        // call; the fd is owned.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), req as _, arg as *mut T) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `UFFDIO_API` with `features`; fails if the kernel lacks one.
    pub fn api(&self, features: u64) -> io::Result<()> {
        let mut api = UffdioApi {
            api: UFFD_API,
            features,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_API, &mut api)?;
        if api.features & features != features {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "the kernel offers uffd features {:#x}, want {features:#x}",
                    api.features
                ),
            ));
        }
        Ok(())
    }

    /// `UFFDIO_REGISTER` of `[start, start + len)` in MISSING mode: every
    /// access to a missing page there, from user space or the kernel,
    /// waits for the pager.
    pub fn register_missing(&self, start: u64, len: u64) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange { start, len },
            mode: UFFDIO_REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        self.ioctl(UFFDIO_REGISTER, &mut reg)
    }

    /// Reads the next message; `None` when there is none now (the fd is
    /// non-blocking).
    pub fn read_msg(&self) -> io::Result<Option<UffdMsg>> {
        let mut msg = UffdMsg::default();
        // SAFETY: reads at most size_of::<UffdMsg>() bytes into a live,
        // exclusively borrowed, plain-old-data struct.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut msg as *mut UffdMsg).cast(),
                size_of::<UffdMsg>(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(e);
        }
        if n as usize != size_of::<UffdMsg>() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short uffd message ({n} bytes)"),
            ));
        }
        Ok(Some(msg))
    }
}

/// What a failed fill ioctl means to the pager: its errno, and the
/// kernel's count (bytes filled, or the negative errno when none was).
fn outcome_of(err: i64, done: i64) -> Outcome {
    match -err as i32 {
        // Only when the very first page is present; a later one stops the
        // call with progress and EAGAIN.
        libc::EEXIST => Outcome::Exists { copied: 0 },
        libc::EAGAIN if done > 0 => Outcome::Partial {
            copied: done as u64,
        },
        libc::EAGAIN => Outcome::Again { copied: 0 },
        // The process's memory is gone (it exited or exec'd).
        libc::ESRCH => Outcome::Gone,
        // The range is no longer registered (unmapped).
        libc::ENOENT => Outcome::Unmapped,
        e => Outcome::Failed(io::Error::from_raw_os_error(e)),
    }
}

impl Fill for Uffd {
    fn copy(&self, dst: u64, src: &[u8]) -> Outcome {
        let mut c = UffdioCopy {
            dst,
            src: src.as_ptr() as u64,
            len: src.len() as u64,
            mode: 0,
            copy: 0,
        };
        // SAFETY: UFFDIO_COPY reads `len` bytes at `src`, which `src`
        // borrows for the call; the struct is the one the request takes.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), UFFDIO_COPY as _, &mut c) };
        if r == 0 {
            return Outcome::Done;
        }
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64;
        // `copy` holds the bytes copied before the error (or the error).
        outcome_of(-errno, c.copy)
    }

    fn zero(&self, dst: u64, len: u64) -> Outcome {
        let mut z = UffdioZeropage {
            range: UffdioRange { start: dst, len },
            mode: 0,
            zeropage: 0,
        };
        if self.ioctl(UFFDIO_ZEROPAGE, &mut z).is_ok() {
            return Outcome::Done;
        }
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0) as i64;
        outcome_of(-errno, z.zeropage)
    }

    fn wake(&self, start: u64, len: u64) {
        let mut r = UffdioRange { start, len };
        // A wake of a range nobody waits in is harmless; its errors
        // (the range is gone) are too.
        let _ = self.ioctl(UFFDIO_WAKE, &mut r);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::FromRawFd;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::pager::fill::fill_range;

    const PAGE: usize = 4096;

    fn own_uffd() -> Uffd {
        // SAFETY: userfaultfd takes flags and returns a new fd we own.
        let fd =
            unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert!(fd >= 0, "userfaultfd: {}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor from the kernel.
        Uffd::new(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// The real kernel: a thread of this process reads a registered,
    /// missing page; the fault comes to the uffd and a copy answers it;
    /// then a copy over a present page reports it, and a zero fill works.
    #[test]
    fn faults_are_answered_by_copy_and_present_pages_are_reported() {
        let uffd = own_uffd();
        uffd.api(0).expect("UFFDIO_API");
        let len = 4 * PAGE;
        // SAFETY: a fresh private anonymous mapping, unmapped at the end.
        let mem = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(mem, libc::MAP_FAILED);
        let base = mem as u64;
        uffd.register_missing(base, len as u64).expect("register");
        let seen = Arc::new(AtomicU64::new(0));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                // SAFETY: reads a byte of the live mapping made above; the
                // read waits for the fault to be answered.
                let b = unsafe { std::ptr::read_volatile((base as usize + PAGE + 5) as *const u8) };
                seen.store(b as u64 + 1, Ordering::SeqCst);
            })
        };
        let msg = loop {
            if let Some(m) = uffd.read_msg().expect("read") {
                break m;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(
            msg.event(),
            Event::Fault {
                address: base + PAGE as u64 + 5
            }
            .with_page_address()
        );
        let data = vec![7u8; 2 * PAGE];
        assert_eq!(uffd.copy(base + PAGE as u64, &data), Outcome::Done);
        reader.join().unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 8);
        // Page 1 is present now: a copy of pages 0..3 stops there, with
        // progress; one that starts there is refused.
        let three = vec![9u8; 3 * PAGE];
        assert_eq!(
            uffd.copy(base, &three),
            Outcome::Partial {
                copied: PAGE as u64
            }
        );
        assert_eq!(
            uffd.copy(base + PAGE as u64, &three),
            Outcome::Exists { copied: 0 }
        );
        // fill_range skips the present pages and fills the rest.
        let all = vec![3u8; len];
        assert_eq!(fill_range(&uffd, base, &all), Outcome::Done);
        assert_eq!(uffd.zero(base, PAGE as u64), Outcome::Exists { copied: 0 });
        // SAFETY: every page is present now; reads of the live mapping.
        let bytes = unsafe { std::slice::from_raw_parts(base as *const u8, len) };
        assert_eq!(bytes[0], 9, "page 0 from the first partial copy");
        assert_eq!(bytes[PAGE], 7);
        assert_eq!(bytes[2 * PAGE], 7);
        assert_eq!(bytes[3 * PAGE], 3, "page 3 from fill_range");
        // SAFETY: unmaps the mapping made above; nothing refers to it now.
        unsafe { libc::munmap(mem, len) };
    }

    impl Event {
        /// The kernel reports the faulting address rounded down to its
        /// page unless UFFD_FEATURE_EXACT_ADDRESS is asked for.
        fn with_page_address(self) -> Self {
            match self {
                Event::Fault { address } => Event::Fault {
                    address: address & !(PAGE as u64 - 1),
                },
                e => e,
            }
        }
    }
}
