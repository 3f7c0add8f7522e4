//! Progress of long operations on a terminal: bytes done, rate, and ETA
//! when the total is known, redrawn at most five times a second on stderr.
//! Quiet when stderr is not a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// Progress for `label`, shown only when stderr is a terminal.
    pub fn new(label: &str, total: Option<u64>) -> Self {
        Self {
            label: label.to_string(),
            total,
            done: 0,
            start: Instant::now(),
            last: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn add(&mut self, bytes: u64) {
        self.set(self.done + bytes);
    }

    pub fn set(&mut self, done: u64) {
        self.done = done;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self.total.is_some_and(|t| done >= t) {
            // The last line stays, and nothing is drawn after it.
            if self.last.is_some() {
                let line = render(&self.label, self.done, self.total, now - self.start);
                let _ = writeln!(std::io::stderr(), "\r\x1b[K{line}");
            }
            self.enabled = false;
            return;
        }
        if self
            .last
            .is_some_and(|l| now - l < Duration::from_millis(200))
        {
            return;
        }
        self.last = Some(now);
        let line = render(&self.label, self.done, self.total, now - self.start);
        let _ = write!(std::io::stderr(), "\r\x1b[K{line}");
    }

    pub fn finish(self) {
        if self.enabled && self.last.is_some() {
            let line = render(&self.label, self.done, self.total, self.start.elapsed());
            let _ = writeln!(std::io::stderr(), "\r\x1b[K{line}");
        }
    }
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// One progress line: `label: 1.5 GiB / 4.0 GiB  512.0 MiB/s  ETA 5s`.
pub fn render(label: &str, done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = done as f64 / secs;
    match total {
        Some(t) => {
            let eta = if rate > 0.0 {
                format!("{:.0}s", t.saturating_sub(done) as f64 / rate)
            } else {
                "?".into()
            };
            format!(
                "{label}: {} / {}  {}/s  ETA {eta}",
                human(done as f64),
                human(t as f64),
                human(rate)
            )
        }
        None => format!("{label}: {}  {}/s", human(done as f64), human(rate)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bytes_rate_and_eta() {
        let s = render(
            "push web:v1",
            1 << 30,
            Some(4 << 30),
            Duration::from_secs(2),
        );
        assert_eq!(s, "push web:v1: 1.0 GiB / 4.0 GiB  512.0 MiB/s  ETA 6s");
        let s = render("checkpoint", 1536, None, Duration::from_secs(1));
        assert_eq!(s, "checkpoint: 1.5 KiB  1.5 KiB/s");
    }
}
