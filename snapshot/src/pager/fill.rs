//! The seam between the pager's logic and the uffd ioctls: [`Fill`]
//! (copy, zero, wake), what a fill came to ([`Outcome`]), and
//! [`fill_range`], which fills a range whatever pages of it are already
//! present.

use std::io;

use crate::sys::PAGE_SIZE;

/// What a fill of a range came to.
#[derive(Debug)]
pub enum Outcome {
    /// Every page of the range is in.
    Done,
    /// A page is already present: `copied` bytes before it were filled.
    Exists {
        copied: u64,
    },
    /// `copied` bytes were filled and the call stopped (the kernel says
    /// EAGAIN with progress when it meets a present page after the
    /// first): call again for the rest.
    Partial {
        copied: u64,
    },
    /// The process's memory is changing (an event waits to be read):
    /// `copied` bytes were filled; try the rest after reading events.
    Again {
        copied: u64,
    },
    /// The memory is gone: the process exited or exec'd (ESRCH).
    Gone,
    /// The range is not registered any more (ENOENT).
    Unmapped,
    Failed(io::Error),
}

impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Done, Self::Done)
            | (Self::Gone, Self::Gone)
            | (Self::Unmapped, Self::Unmapped) => true,
            (Self::Exists { copied: a }, Self::Exists { copied: b })
            | (Self::Partial { copied: a }, Self::Partial { copied: b })
            | (Self::Again { copied: a }, Self::Again { copied: b }) => a == b,
            (Self::Failed(a), Self::Failed(b)) => a.kind() == b.kind(),
            _ => false,
        }
    }
}

/// The kernel calls the pager fills memory with: `UFFDIO_COPY`,
/// `UFFDIO_ZEROPAGE`, `UFFDIO_WAKE` (on a [`super::uffd::Uffd`]).
pub trait Fill {
    /// Copies `src` to the missing pages at `dst` and wakes threads
    /// waiting there.
    fn copy(&self, dst: u64, src: &[u8]) -> Outcome;
    /// Maps the zero page at the missing pages of `[dst, dst + len)`.
    fn zero(&self, dst: u64, len: u64) -> Outcome;
    /// Wakes threads waiting on faults in `[start, start + len)`.
    fn wake(&self, start: u64, len: u64);
}

/// Copies `data` to `dst`, skipping pages already present: a copy stops at
/// the first present page, so the fill goes on one page after it. A range
/// the kernel refuses whole (ENOENT: it no longer lies in one registered
/// mapping, say after an `mprotect` split one) is filled page by page, and
/// pages that are not registered any more are skipped. Returns `Done` when
/// every page that can take data has it, or the first other outcome
/// (`Again` with the bytes of `data` handled so far; `Gone`; `Failed`).
pub fn fill_range(f: &dyn Fill, dst: u64, data: &[u8]) -> Outcome {
    fill_with(data.len() as u64, |at, end| {
        f.copy(dst + at, &data[at as usize..end as usize])
    })
}

/// Zero-fills `[dst, dst + len)` as [`fill_range`] fills.
pub fn zero_range(f: &dyn Fill, dst: u64, len: u64) -> Outcome {
    fill_with(len, |at, end| f.zero(dst + at, end - at))
}

/// The loop of [`fill_range`] and [`zero_range`]: `op(at, end)` fills
/// bytes `at..end` of the range.
fn fill_with(len: u64, op: impl Fn(u64, u64) -> Outcome) -> Outcome {
    let mut at = 0u64;
    let mut pagewise = false;
    while at < len {
        let end = if pagewise {
            (at + PAGE_SIZE).min(len)
        } else {
            len
        };
        match op(at, end) {
            Outcome::Done if !pagewise => return Outcome::Done,
            Outcome::Done => at = end,
            Outcome::Exists { copied } => at += copied + PAGE_SIZE,
            Outcome::Partial { copied } => at += copied,
            Outcome::Again { copied } => {
                return Outcome::Again {
                    copied: at + copied,
                }
            }
            Outcome::Unmapped if pagewise => at = end,
            Outcome::Unmapped => pagewise = true,
            other => return other,
        }
    }
    Outcome::Done
}

#[cfg(test)]
pub mod fake {
    //! A recording [`Fill`] over a set of present pages, for unit tests.

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    pub struct FakeMemory {
        /// Page address -> its first byte (0 for the zero page).
        pub pages: RefCell<BTreeMap<u64, u8>>,
        /// Return `Again` from the next this many calls.
        pub again: RefCell<u32>,
        pub calls: RefCell<Vec<(&'static str, u64, u64)>>,
        pub gone: bool,
        /// Mappings (start, end): a fill must lie in one; none: any.
        pub vmas: Vec<(u64, u64)>,
    }

    impl FakeMemory {
        fn fill(
            &self,
            what: &'static str,
            dst: u64,
            len: u64,
            byte: impl Fn(u64) -> u8,
        ) -> Outcome {
            self.calls.borrow_mut().push((what, dst, len));
            if self.gone {
                return Outcome::Gone;
            }
            if !self.vmas.is_empty() && !self.vmas.iter().any(|&(s, e)| dst >= s && dst + len <= e)
            {
                return Outcome::Unmapped;
            }
            let mut pages = self.pages.borrow_mut();
            if pages.contains_key(&dst) {
                return Outcome::Exists { copied: 0 };
            }
            {
                let mut again = self.again.borrow_mut();
                if *again > 0 {
                    *again -= 1;
                    return Outcome::Again { copied: 0 };
                }
            }
            let mut off = 0;
            while off < len {
                if pages.contains_key(&(dst + off)) {
                    // As the kernel does: progress, then EAGAIN.
                    return Outcome::Partial { copied: off };
                }
                pages.insert(dst + off, byte(off));
                off += PAGE_SIZE;
            }
            Outcome::Done
        }
    }

    impl Fill for FakeMemory {
        fn copy(&self, dst: u64, src: &[u8]) -> Outcome {
            self.fill("copy", dst, src.len() as u64, |off| src[off as usize])
        }

        fn zero(&self, dst: u64, len: u64) -> Outcome {
            self.fill("zero", dst, len, |_| 0)
        }

        fn wake(&self, start: u64, len: u64) {
            self.calls.borrow_mut().push(("wake", start, len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeMemory;
    use super::*;

    const P: u64 = PAGE_SIZE;

    fn data(pages: u64) -> Vec<u8> {
        (0..pages * P).map(|i| (i / P) as u8 + 1).collect()
    }

    #[test]
    fn present_pages_are_skipped_and_the_rest_filled() {
        let mem = FakeMemory::default();
        mem.pages.borrow_mut().insert(0x10000 + P, 99);
        mem.pages.borrow_mut().insert(0x10000 + 3 * P, 98);
        assert_eq!(fill_range(&mem, 0x10000, &data(5)), Outcome::Done);
        let pages = mem.pages.borrow();
        let got: Vec<u8> = (0..5).map(|i| pages[&(0x10000 + i * P)]).collect();
        assert_eq!(got, vec![1, 99, 3, 98, 5], "present pages keep their bytes");
        let copies = mem.calls.borrow().iter().filter(|c| c.0 == "copy").count();
        assert_eq!(
            copies, 5,
            "as the kernel: progress then EAGAIN, then EEXIST"
        );
    }

    #[test]
    fn again_reports_what_was_filled_and_gone_stops() {
        let mem = FakeMemory::default();
        mem.pages.borrow_mut().insert(0x10000, 99);
        *mem.again.borrow_mut() = 1;
        // The first copy meets the present page (0 copied), the second
        // (from page 1) is told to come back.
        assert_eq!(
            fill_range(&mem, 0x10000, &data(3)),
            Outcome::Again { copied: P }
        );
        let gone = FakeMemory {
            gone: true,
            ..Default::default()
        };
        assert_eq!(fill_range(&gone, 0x10000, &data(2)), Outcome::Gone);
        assert_eq!(zero_range(&gone, 0x10000, P), Outcome::Gone);
    }

    #[test]
    fn a_range_over_two_mappings_is_filled_page_by_page_around_a_hole() {
        // Pages 0-1 in one mapping, page 2 unmapped, page 3 in another.
        let mem = FakeMemory {
            vmas: vec![
                (0x10000, 0x10000 + 2 * P),
                (0x10000 + 3 * P, 0x10000 + 4 * P),
            ],
            ..Default::default()
        };
        assert_eq!(fill_range(&mem, 0x10000, &data(4)), Outcome::Done);
        let pages = mem.pages.borrow();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages[&(0x10000 + 3 * P)], 4);
        assert!(!pages.contains_key(&(0x10000 + 2 * P)));
    }

    #[test]
    fn zero_fill_skips_present_pages() {
        let mem = FakeMemory::default();
        mem.pages.borrow_mut().insert(0x20000 + P, 5);
        assert_eq!(zero_range(&mem, 0x20000, 3 * P), Outcome::Done);
        let pages = mem.pages.borrow();
        assert_eq!(pages[&0x20000], 0);
        assert_eq!(pages[&(0x20000 + P)], 5);
        assert_eq!(pages[&(0x20000 + 2 * P)], 0);
    }
}
