//! What is still to be copied into one process's memory, and where.
//!
//! [`ChunkTable`] lists the stored chunks of the lazily served mappings as
//! the snapshot has them (index = chunk id). A [`PageMap`] holds the
//! registered ranges and, as pieces, the parts of chunks not yet copied,
//! at the addresses they have now: an unmapped or dropped range loses its
//! pieces (its pages read as zero from then on), a moved one takes them
//! along. A missing page that no piece covers is served as zeros.

use std::collections::BTreeMap;

use snaprun_store::{ChunkRef, Digest};

use crate::image::Vma;
use crate::sys::PAGE_SIZE;

/// One stored chunk of a lazily served mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Where the snapshot had it.
    pub addr: u64,
    pub len: u64,
    pub digest: Digest,
}

impl ChunkInfo {
    pub fn chunk_ref(&self) -> ChunkRef {
        ChunkRef {
            len: self.len,
            digest: Some(self.digest),
        }
    }
}

/// The stored chunks of a process's lazily served mappings, by address.
#[derive(Clone, Debug, Default)]
pub struct ChunkTable {
    pub chunks: Vec<ChunkInfo>,
}

impl ChunkTable {
    /// The chunks of `vmas` (all-zero chunks, which are not stored, are
    /// left out: their pages are served as zeros).
    pub fn build<'a>(vmas: impl IntoIterator<Item = &'a Vma>) -> Self {
        let mut chunks = Vec::new();
        for v in vmas {
            for run in &v.runs {
                let mut addr = v.start + run.vma_offset;
                for c in &run.chunks {
                    if let Some(digest) = c.digest {
                        chunks.push(ChunkInfo {
                            addr,
                            len: c.len,
                            digest,
                        });
                    }
                    addr += c.len;
                }
            }
        }
        chunks.sort_by_key(|c| c.addr);
        Self { chunks }
    }

    /// The chunk that starts at `addr`.
    pub fn index_of(&self, addr: u64) -> Option<usize> {
        self.chunks.binary_search_by_key(&addr, |c| c.addr).ok()
    }

    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.len).sum()
    }
}

/// A registered range (the key is its start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub end: u64,
    /// `MADV_WIPEONFORK`: a child gets it empty (zeros).
    pub wipeonfork: bool,
    /// `MADV_DONTFORK`: a child does not get it at all.
    pub dontfork: bool,
}

/// A part of a chunk not copied yet (the key is its address now).
#[derive(Clone, Copy, Debug)]
pub struct Piece {
    pub len: u64,
    /// Index into the [`ChunkTable`].
    pub chunk: usize,
    /// Offset of the piece's first byte in the chunk.
    pub off: u64,
    /// A streaming thread has taken it.
    claimed: bool,
}

impl PartialEq for Piece {
    /// The same bytes at the same place, whoever has claimed it.
    fn eq(&self, o: &Self) -> bool {
        (self.len, self.chunk, self.off) == (o.len, o.chunk, o.off)
    }
}

impl Eq for Piece {}

#[derive(Clone, Debug, Default)]
pub struct PageMap {
    ranges: BTreeMap<u64, Range>,
    pieces: BTreeMap<u64, Piece>,
    /// Where the next streaming claim starts looking.
    cursor: u64,
}

impl PageMap {
    /// Every chunk of `table` pending, in the registered `ranges`.
    pub fn new(table: &ChunkTable, ranges: impl IntoIterator<Item = (u64, Range)>) -> Self {
        let pieces = table
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| {
                (
                    c.addr,
                    Piece {
                        len: c.len,
                        chunk: i,
                        off: 0,
                        claimed: false,
                    },
                )
            })
            .collect();
        Self {
            ranges: ranges.into_iter().collect(),
            pieces,
            cursor: 0,
        }
    }

    /// True when no piece is left: every stored page is in (or gone).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn pending_bytes(&self) -> u64 {
        self.pieces.values().map(|p| p.len).sum()
    }

    pub fn pieces(&self) -> impl Iterator<Item = (u64, Piece)> + '_ {
        self.pieces.iter().map(|(a, p)| (*a, *p))
    }

    /// The piece that covers `addr`.
    pub fn piece_at(&self, addr: u64) -> Option<(u64, Piece)> {
        let (&start, &p) = self.pieces.range(..=addr).next_back()?;
        (addr < start + p.len).then_some((start, p))
    }

    /// The pending piece that comes from chunk `chunk` (the first one, if
    /// it was split).
    pub fn piece_of_chunk(&self, chunk: usize, hint: u64) -> Option<(u64, Piece)> {
        self.piece_at(hint)
            .filter(|(_, p)| p.chunk == chunk)
            .or_else(|| self.pieces().find(|(_, p)| p.chunk == chunk))
    }

    /// True if `piece` is still pending at `start`, unchanged.
    pub fn holds(&self, start: u64, piece: &Piece) -> bool {
        self.pieces.get(&start) == Some(piece)
    }

    /// Marks `piece` at `start` copied; false if it had changed meanwhile.
    pub fn done(&mut self, start: u64, piece: &Piece) -> bool {
        if self.holds(start, piece) {
            self.pieces.remove(&start);
            return true;
        }
        false
    }

    /// Takes the next unclaimed piece for streaming, in address order from
    /// where the last claim left off, wrapping around.
    pub fn claim_next(&mut self) -> Option<(u64, Piece)> {
        let after = self.pieces.range(self.cursor..);
        let before = self.pieces.range(..self.cursor);
        let start = after
            .chain(before)
            .find(|(_, p)| !p.claimed)
            .map(|(a, _)| *a)?;
        let p = self.pieces.get_mut(&start).expect("just found");
        p.claimed = true;
        self.cursor = start + p.len;
        Some((start, *p))
    }

    /// Claims the piece at `start` (working-set pushes); false if it is
    /// not pending or already claimed.
    pub fn claim(&mut self, start: u64) -> bool {
        match self.pieces.get_mut(&start) {
            Some(p) if !p.claimed => {
                p.claimed = true;
                true
            }
            _ => false,
        }
    }

    /// Gives back a claimed piece that could not be copied now.
    pub fn unclaim(&mut self, start: u64, piece: &Piece) {
        if let Some(p) = self.pieces.get_mut(&start) {
            if p == piece {
                p.claimed = false;
                self.cursor = self.cursor.min(start);
            }
        }
    }

    /// The range to map zeros at for a fault at `addr` that no piece
    /// covers: the `window`-aligned block around it, within its registered
    /// range and between the pieces around it; the page alone when no
    /// registered range is known there (a stack grown below its start).
    pub fn zero_span(&self, addr: u64, window: u64) -> (u64, u64) {
        let page = addr & !(PAGE_SIZE - 1);
        let Some((&rs, r)) = self.ranges.range(..=page).next_back() else {
            return (page, PAGE_SIZE);
        };
        if page >= r.end {
            return (page, PAGE_SIZE);
        }
        let mut lo = (page & !(window - 1)).max(rs);
        let mut hi = ((page & !(window - 1)) + window).min(r.end);
        if let Some((&s, p)) = self.pieces.range(..page).next_back() {
            lo = lo.max(s + p.len);
        }
        if let Some((&s, _)) = self.pieces.range(page..).next() {
            hi = hi.min(s);
        }
        if lo > page || hi <= page {
            return (page, PAGE_SIZE);
        }
        (lo, hi - lo)
    }

    /// Splits the piece and the range that span `addr`, so that `addr` is
    /// a boundary. Split pieces lose their claim (a streaming thread that
    /// holds the old one finds it changed).
    fn split_at(&mut self, addr: u64) {
        if let Some((&s, &p)) = self.pieces.range(..addr).next_back() {
            if addr < s + p.len {
                let head = addr - s;
                self.pieces.insert(
                    s,
                    Piece {
                        len: head,
                        claimed: false,
                        ..p
                    },
                );
                self.pieces.insert(
                    addr,
                    Piece {
                        len: p.len - head,
                        off: p.off + head,
                        claimed: false,
                        ..p
                    },
                );
            }
        }
        if let Some((&s, &r)) = self.ranges.range(..addr).next_back() {
            if addr < r.end {
                self.ranges.insert(s, Range { end: addr, ..r });
                self.ranges.insert(addr, r);
            }
        }
    }

    fn take_pieces(&mut self, start: u64, end: u64) -> Vec<(u64, Piece)> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.pieces.range(start..end).map(|(a, _)| *a).collect();
        keys.into_iter()
            .map(|a| (a, self.pieces.remove(&a).expect("listed")))
            .collect()
    }

    fn take_ranges(&mut self, start: u64, end: u64) -> Vec<(u64, Range)> {
        self.split_at(start);
        self.split_at(end);
        let keys: Vec<u64> = self.ranges.range(start..end).map(|(a, _)| *a).collect();
        keys.into_iter()
            .map(|a| (a, self.ranges.remove(&a).expect("listed")))
            .collect()
    }

    /// `madvise(MADV_DONTNEED)` dropped `[start, end)`: its pages read as
    /// zeros now, whatever the snapshot had there.
    pub fn remove(&mut self, start: u64, end: u64) {
        self.take_pieces(start, end);
    }

    /// `[start, end)` was unmapped: nothing is served there any more.
    pub fn unmap(&mut self, start: u64, end: u64) {
        self.take_pieces(start, end);
        self.take_ranges(start, end);
    }

    /// `mremap` moved `[from, from + len)` to `to`, with its pages.
    pub fn remap(&mut self, from: u64, to: u64, len: u64) {
        if from == to || len == 0 {
            return;
        }
        let pieces = self.take_pieces(from, from + len);
        let ranges: Vec<(u64, Range)> = self
            .ranges
            .range(..from + len)
            .filter(|(s, r)| r.end > from && **s < from + len)
            .map(|(s, r)| (*s, *r))
            .collect();
        // Whatever was at the destination was unmapped by the move.
        self.unmap(to, to + len);
        for (a, p) in pieces {
            self.pieces.insert(
                a - from + to,
                Piece {
                    claimed: false,
                    ..p
                },
            );
        }
        for (s, r) in ranges {
            let s2 = s.max(from);
            let e2 = r.end.min(from + len);
            self.ranges.insert(
                s2 - from + to,
                Range {
                    end: e2 - from + to,
                    ..r
                },
            );
        }
    }

    /// The map a child gets at fork: the same pending pieces (the child's
    /// missing pages are the parent's at the moment of the fork), but for
    /// `MADV_DONTFORK` ranges (not in the child) and `MADV_WIPEONFORK`
    /// ones (zeros in the child).
    pub fn fork_clone(&self) -> Self {
        let mut child = Self {
            ranges: self.ranges.clone(),
            pieces: self
                .pieces
                .iter()
                .map(|(a, p)| {
                    (
                        *a,
                        Piece {
                            claimed: false,
                            ..*p
                        },
                    )
                })
                .collect(),
            cursor: 0,
        };
        for (s, r) in self.ranges.iter() {
            if r.dontfork {
                child.unmap(*s, r.end);
            } else if r.wipeonfork {
                child.remove(*s, r.end);
            }
        }
        child
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{PageRun, VmaAdvice, VmaKind};

    const P: u64 = PAGE_SIZE;
    const C: u64 = 4 * P;

    fn digest(n: u8) -> Digest {
        Digest([n; 32])
    }

    /// A VMA at 0x100000 of 16 pages: chunks of 4 pages at +0 (stored),
    /// +4 pages (all zero, not stored) and +12 pages (stored).
    fn vma() -> Vma {
        Vma {
            start: 0x100000,
            end: 0x100000 + 16 * P,
            prot: 3,
            kind: VmaKind::Anon,
            file: None,
            offset: 0,
            name: String::new(),
            advice: VmaAdvice::default(),
            shmem_inode: 0,
            runs: vec![
                PageRun {
                    vma_offset: 0,
                    len: 2 * C,
                    chunks: vec![
                        ChunkRef {
                            len: C,
                            digest: Some(digest(1)),
                        },
                        ChunkRef {
                            len: C,
                            digest: None,
                        },
                    ],
                },
                PageRun {
                    vma_offset: 12 * P,
                    len: C,
                    chunks: vec![ChunkRef {
                        len: C,
                        digest: Some(digest(2)),
                    }],
                },
            ],
        }
    }

    fn map() -> (ChunkTable, PageMap) {
        let v = vma();
        let t = ChunkTable::build([&v]);
        let m = PageMap::new(
            &t,
            [(
                v.start,
                Range {
                    end: v.end,
                    wipeonfork: false,
                    dontfork: false,
                },
            )],
        );
        (t, m)
    }

    #[test]
    fn the_table_lists_stored_chunks_at_their_addresses() {
        let (t, m) = map();
        assert_eq!(t.chunks.len(), 2);
        assert_eq!(t.chunks[0].addr, 0x100000);
        assert_eq!(t.chunks[1].addr, 0x100000 + 12 * P);
        assert_eq!(t.index_of(0x100000 + 12 * P), Some(1));
        assert_eq!(t.index_of(0x100000 + P), None);
        assert_eq!(m.pending_bytes(), 2 * C);
        let (s, p) = m.piece_at(0x100000 + 3 * P + 17).unwrap();
        assert_eq!((s, p.chunk, p.off), (0x100000, 0, 0));
        assert!(m.piece_at(0x100000 + 5 * P).is_none(), "a zero chunk");
    }

    #[test]
    fn zero_spans_stop_at_pieces_and_range_ends() {
        let (_, m) = map();
        // Between the two stored chunks: pages 4..12.
        assert_eq!(
            m.zero_span(0x100000 + 5 * P + 9, 64 * P),
            (0x100000 + 4 * P, 8 * P)
        );
        // A window smaller than the gap.
        assert_eq!(
            m.zero_span(0x100000 + 9 * P, 4 * P),
            (0x100000 + 8 * P, 4 * P)
        );
        // Outside every registered range: the page alone.
        assert_eq!(m.zero_span(0x100000 - 3 * P, 64 * P), (0x100000 - 3 * P, P));
        assert_eq!(
            m.zero_span(0x100000 + 16 * P, 64 * P),
            (0x100000 + 16 * P, P)
        );
    }

    #[test]
    fn dropped_pages_are_no_longer_served_from_the_snapshot() {
        let (_, mut m) = map();
        m.remove(0x100000 + P, 0x100000 + 2 * P);
        let (s, p) = m.piece_at(0x100000).unwrap();
        assert_eq!((s, p.len, p.off), (0x100000, P, 0));
        assert!(m.piece_at(0x100000 + P).is_none());
        let (s, p) = m.piece_at(0x100000 + 2 * P).unwrap();
        assert_eq!(
            (s, p.len, p.off, p.chunk),
            (0x100000 + 2 * P, 2 * P, 2 * P, 0)
        );
        m.unmap(0x100000 + 12 * P, 0x100000 + 16 * P);
        assert!(m.piece_at(0x100000 + 13 * P).is_none());
        assert_eq!(
            m.zero_span(0x100000 + 13 * P, 64 * P),
            (0x100000 + 13 * P, P),
            "the unmapped part is no registered range any more"
        );
        assert_eq!(m.pending_bytes(), 3 * P);
    }

    #[test]
    fn moved_pages_keep_their_content() {
        let (_, mut m) = map();
        let to = 0x900000;
        m.remap(0x100000 + 2 * P, to, 12 * P);
        // Pages 2..14 moved: chunk 0's last half and chunk 1's first half.
        let (s, p) = m.piece_at(to).unwrap();
        assert_eq!((s, p.len, p.off, p.chunk), (to, 2 * P, 2 * P, 0));
        let (s, p) = m.piece_at(to + 10 * P).unwrap();
        assert_eq!((s, p.len, p.off, p.chunk), (to + 10 * P, 2 * P, 0, 1));
        assert!(m.piece_at(0x100000 + 12 * P).is_none());
        let (s, p) = m.piece_at(0x100000 + 14 * P).unwrap();
        assert_eq!((s, p.off, p.chunk), (0x100000 + 14 * P, 2 * P, 1));
        assert_eq!(m.zero_span(to + 5 * P, 64 * P), (to + 2 * P, 8 * P));
        assert_eq!(m.pending_bytes(), 2 * C);
    }

    #[test]
    fn streaming_claims_each_piece_once_and_a_split_claim_is_released() {
        let (_, mut m) = map();
        let (a, pa) = m.claim_next().unwrap();
        let (b, _) = m.claim_next().unwrap();
        assert_ne!(a, b);
        assert!(m.claim_next().is_none(), "both are taken");
        m.unclaim(b, &m.piece_at(b).unwrap().1);
        assert_eq!(m.claim_next().unwrap().0, b);
        // A drop in the middle of the claimed piece at a: its halves are
        // free again and the stale claim no longer matches.
        m.remove(a + P, a + 2 * P);
        assert!(!m.holds(a, &pa));
        assert!(!m.done(a, &pa));
        let (c, _) = m.claim_next().unwrap();
        let (d, _) = m.claim_next().unwrap();
        assert_eq!([c.min(d), c.max(d)], [a, a + 2 * P]);
        assert!(m.done(c, &m.piece_at(c).unwrap().1));
    }

    #[test]
    fn a_child_gets_the_pending_pieces_but_not_wiped_or_unforked_ranges() {
        let v = vma();
        let t = ChunkTable::build([&v]);
        let mut m = PageMap::new(
            &t,
            [
                (
                    v.start,
                    Range {
                        end: v.start + 8 * P,
                        wipeonfork: true,
                        dontfork: false,
                    },
                ),
                (
                    v.start + 8 * P,
                    Range {
                        end: v.end,
                        wipeonfork: false,
                        dontfork: false,
                    },
                ),
            ],
        );
        m.claim_next();
        let child = m.fork_clone();
        assert!(child.piece_at(v.start).is_none(), "wiped: zeros");
        assert_eq!(child.zero_span(v.start + P, 64 * P), (v.start, 8 * P));
        let (s, p) = child.piece_at(v.start + 12 * P).unwrap();
        assert_eq!((s, p.chunk), (v.start + 12 * P, 1));
        let mut child2 = m.fork_clone();
        assert!(child2.claim_next().is_some(), "claims are not inherited");
        let mut m3 = m.clone();
        m3.ranges.get_mut(&(v.start + 8 * P)).unwrap().dontfork = true;
        let child3 = m3.fork_clone();
        assert!(child3.is_empty());
        assert_eq!(
            child3.zero_span(v.start + 12 * P, 64 * P),
            (v.start + 12 * P, P)
        );
    }
}
