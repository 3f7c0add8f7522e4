//! The working set of a snapshot: per process, the chunks a restored
//! process needed first, in the order it needed them.
//!
//! A lazy restore records the chunks it faulted (from the registration to
//! the end of the recording window) and saves them as a small JSON object
//! in the home tier of the snapshot's store, `working-sets/<root digest>`
//! (an image directory is a store of its own, so its set lies in
//! `DIR/working-sets/`). Later lazy restores of the same snapshot push
//! those chunks before the process resumes. Chunks are named by the
//! address the snapshot had them at, so a set stays valid for exactly the
//! snapshot (root) it was recorded for.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use snaprun_store::lock::StoreLock;
use snaprun_store::tier::Tier;
use snaprun_store::{Digest, Store};

use super::PagerError;

/// The format of a saved working set.
pub const WS_FORMAT: u32 = 1;
/// Saved sets larger than this are refused before parsing.
const WS_MAX: usize = 64 << 20;

/// The store key of the working set of the snapshot whose root is `root`.
pub fn key(root: &Digest) -> String {
    format!("working-sets/{root}")
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WsProcess {
    pub pid: i32,
    /// Chunk addresses as the snapshot has them, first needed first.
    pub chunks: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingSet {
    pub format: u32,
    /// The snapshot root it was recorded for.
    pub root: String,
    pub processes: Vec<WsProcess>,
}

impl WorkingSet {
    /// The chunk addresses of process `pid` (empty if it has none).
    pub fn chunks_of(&self, pid: i32) -> &[u64] {
        self.processes
            .iter()
            .find(|p| p.pid == pid)
            .map_or(&[], |p| p.chunks.as_slice())
    }

    pub fn len(&self) -> usize {
        self.processes.iter().map(|p| p.chunks.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Parses a saved set; `None` (with a warning) for one that is not of
    /// this snapshot or not readable: a bad working set costs speed, never
    /// correctness, so it is ignored rather than fatal.
    pub fn decode(bytes: &[u8], root: &Digest) -> Option<Self> {
        if bytes.len() > WS_MAX {
            tracing::warn!(len = bytes.len(), "working set too large; ignored");
            return None;
        }
        match serde_json::from_slice::<WorkingSet>(bytes) {
            Ok(ws) if ws.format == WS_FORMAT && ws.root == root.to_string() => Some(ws),
            Ok(ws) => {
                tracing::warn!(format = ws.format, root = %ws.root, "working set of another format or snapshot; ignored");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable working set; ignored");
                None
            }
        }
    }

    /// The set saved for the snapshot `root`, if any.
    pub fn load(store: &Store, root: &Digest) -> Result<Option<Self>, PagerError> {
        let k = key(root);
        let bytes = store.disk().get(&k).map_err(|e| PagerError::WorkingSet {
            key: k.clone(),
            reason: e.to_string(),
        })?;
        Ok(bytes.and_then(|b| Self::decode(&b, root)))
    }

    /// Saves the set (atomically: temp file, fsync, rename), holding the
    /// store lock shared so that a GC does not run meanwhile.
    pub fn save(&self, store: &Store) -> Result<(), PagerError> {
        let root: Digest = self.root.parse().map_err(|e| PagerError::WorkingSet {
            key: "working-sets/?".into(),
            reason: format!("{e}"),
        })?;
        let k = key(&root);
        let err = |reason: String| PagerError::WorkingSet {
            key: k.clone(),
            reason,
        };
        let _lock = StoreLock::acquire(store.dir(), false).map_err(|e| err(e.to_string()))?;
        let bytes = serde_json::to_vec(self).expect("a working set serializes");
        store.disk().put(&k, &bytes).map_err(|e| err(e.to_string()))
    }
}

/// Records the chunks each process of a restore needs, in order, on top
/// of the set it started from (which stays first).
#[derive(Debug, Default)]
pub struct Recorder {
    processes: Vec<WsProcess>,
    seen: Vec<HashSet<u64>>,
    /// Chunks recorded that the starting set did not have.
    added: usize,
}

impl Recorder {
    /// A recorder starting from `base`.
    pub fn new(base: Option<&WorkingSet>) -> Self {
        let processes = base.map_or_else(Vec::new, |b| b.processes.clone());
        let seen = processes
            .iter()
            .map(|p| p.chunks.iter().copied().collect())
            .collect();
        Self {
            processes,
            seen,
            added: 0,
        }
    }

    /// Notes that process `pid` (as the snapshot has it) needed the chunk
    /// at `addr`.
    pub fn note(&mut self, pid: i32, addr: u64) {
        let i = match self.processes.iter().position(|p| p.pid == pid) {
            Some(i) => i,
            None => {
                self.processes.push(WsProcess {
                    pid,
                    chunks: Vec::new(),
                });
                self.seen.push(HashSet::new());
                self.processes.len() - 1
            }
        };
        if self.seen[i].insert(addr) {
            self.processes[i].chunks.push(addr);
            self.added += 1;
        }
    }

    /// Chunks recorded beyond the starting set.
    pub fn added(&self) -> usize {
        self.added
    }

    pub fn finish(&self, root: &Digest) -> WorkingSet {
        WorkingSet {
            format: WS_FORMAT,
            root: root.to_string(),
            processes: self.processes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> Digest {
        Digest([7; 32])
    }

    #[test]
    fn a_recording_keeps_order_and_adds_to_the_set_it_started_from() {
        let base = WorkingSet {
            format: WS_FORMAT,
            root: root().to_string(),
            processes: vec![WsProcess {
                pid: 10,
                chunks: vec![0x3000, 0x1000],
            }],
        };
        let mut r = Recorder::new(Some(&base));
        r.note(10, 0x1000);
        r.note(10, 0x5000);
        r.note(11, 0x2000);
        r.note(11, 0x2000);
        assert_eq!(r.added(), 2);
        let ws = r.finish(&root());
        assert_eq!(ws.chunks_of(10), &[0x3000, 0x1000, 0x5000]);
        assert_eq!(ws.chunks_of(11), &[0x2000]);
        assert_eq!(ws.chunks_of(12), &[] as &[u64]);
        assert_eq!(ws.len(), 4);
    }

    #[test]
    fn a_set_saved_in_a_store_loads_back_for_its_snapshot_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(WorkingSet::load(&store, &root()).unwrap(), None);
        let mut r = Recorder::new(None);
        r.note(5, 0x7000);
        let ws = r.finish(&root());
        ws.save(&store).unwrap();
        assert!(dir.path().join(key(&root())).exists());
        assert_eq!(WorkingSet::load(&store, &root()).unwrap(), Some(ws.clone()));
        // Another snapshot's root: not this set.
        let other = Digest([8; 32]);
        std::fs::copy(dir.path().join(key(&root())), dir.path().join(key(&other))).unwrap();
        assert_eq!(WorkingSet::load(&store, &other).unwrap(), None);
        // Garbage is ignored, not fatal.
        std::fs::write(dir.path().join(key(&root())), b"{not json").unwrap();
        assert_eq!(WorkingSet::load(&store, &root()).unwrap(), None);
    }
}
