//! The pager's figures: counted as it runs, logged, and written as JSON
//! (`restore --pager-stats FILE`) when the recording window closes and
//! when the pager ends.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Counters the pager's threads add to.
#[derive(Debug, Default)]
pub struct Counters {
    pub faults: AtomicU64,
    pub fault_bytes: AtomicU64,
    pub zero_faults: AtomicU64,
    pub pushed_chunks: AtomicU64,
    pub pushed_bytes: AtomicU64,
    pub streamed_chunks: AtomicU64,
    pub streamed_bytes: AtomicU64,
    pub forks: AtomicU64,
    pub remaps: AtomicU64,
    pub removes: AtomicU64,
    pub unmaps: AtomicU64,
}

impl Counters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The fault figures at the end of the recording window: what the process
/// needed before its first answer when the window is closed at that
/// answer (a SIGUSR1 to the pager).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `signal`, `timer`, `exit` (the processes ended) or `complete`
    /// (every page was in).
    pub closed_by: String,
    /// Milliseconds from the resume to the close.
    pub ms_after_resume: f64,
    /// Faults answered with stored data, and their bytes.
    pub faults: u64,
    pub fault_bytes: u64,
    /// Faults answered with zeros.
    pub zero_faults: u64,
}

/// What `--pager-stats FILE` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub pager_pid: u32,
    pub snapshot: String,
    /// Processes attached (forked children not counted).
    pub processes: usize,
    /// Stored bytes of the lazily served mappings.
    pub lazy_bytes: u64,
    /// Chunks in the working set the restore started from.
    pub ws_loaded_chunks: usize,
    pub ws_pushed_chunks: u64,
    pub ws_pushed_bytes: u64,
    /// From the first attach to the last working set pushed.
    pub ws_push_ms: f64,
    /// Chunks in the set saved at the window's close (none saved: `None`).
    pub ws_saved_chunks: Option<usize>,
    pub window: Option<Window>,
    pub faults: u64,
    pub fault_bytes: u64,
    pub zero_faults: u64,
    pub streamed_chunks: u64,
    pub streamed_bytes: u64,
    /// From the start of streaming to the last page in.
    pub stream_secs: f64,
    /// streamed_bytes / stream_secs, in GB/s.
    pub stream_gbps: f64,
    pub forks: u64,
    pub remaps: u64,
    pub removes: u64,
    pub unmaps: u64,
    /// Every page was in and the pager ended.
    pub done: bool,
    /// Why the pager killed the processes it served.
    pub error: Option<String>,
}

impl Stats {
    /// Copies the counters in.
    pub fn take_counters(&mut self, c: &Counters) {
        self.faults = Counters::get(&c.faults);
        self.fault_bytes = Counters::get(&c.fault_bytes);
        self.zero_faults = Counters::get(&c.zero_faults);
        self.ws_pushed_chunks = Counters::get(&c.pushed_chunks);
        self.ws_pushed_bytes = Counters::get(&c.pushed_bytes);
        self.streamed_chunks = Counters::get(&c.streamed_chunks);
        self.streamed_bytes = Counters::get(&c.streamed_bytes);
        self.forks = Counters::get(&c.forks);
        self.remaps = Counters::get(&c.remaps);
        self.removes = Counters::get(&c.removes);
        self.unmaps = Counters::get(&c.unmaps);
    }

    /// Writes the figures as JSON (temp file and rename); failures are
    /// logged, not fatal.
    pub fn write(&self, path: &Path) {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let body = serde_json::to_vec_pretty(self).expect("stats serialize");
        if let Err(e) = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the pager's figures");
        }
    }

    /// Reads figures written by [`Stats::write`].
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        let c = Counters::default();
        Counters::add(&c.faults, 3);
        Counters::add(&c.fault_bytes, 3 << 18);
        let mut s = Stats {
            pager_pid: 9,
            window: Some(Window {
                closed_by: "signal".into(),
                faults: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        s.take_counters(&c);
        s.write(&path);
        let back = Stats::read(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.faults, 3);
    }
}
