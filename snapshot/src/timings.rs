//! Phase timings of a checkpoint or restore (`--timings`).

use std::fmt;
use std::time::{Duration, Instant};

/// Named phases in the order they ran, each with its duration.
#[derive(Debug, Default, Clone)]
pub struct Timings {
    phases: Vec<(&'static str, Duration)>,
    current: Option<(&'static str, Instant)>,
}

impl Timings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ends the running phase (if any) and starts `name`.
    pub fn phase(&mut self, name: &'static str) {
        self.end();
        self.current = Some((name, Instant::now()));
    }

    /// Ends the running phase. A phase that runs again (once per process
    /// of a tree) adds to its first entry.
    pub fn end(&mut self) {
        if let Some((name, start)) = self.current.take() {
            let d = start.elapsed();
            match self.phases.iter_mut().find(|(n, _)| *n == name) {
                Some((_, total)) => *total += d,
                None => self.phases.push((name, d)),
            }
        }
    }

    pub fn phases(&self) -> &[(&'static str, Duration)] {
        &self.phases
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }
}

impl fmt::Display for Timings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, d) in &self.phases {
            writeln!(f, "  {name:<14} {:>10.3} ms", d.as_secs_f64() * 1e3)?;
        }
        write!(
            f,
            "  {:<14} {:>10.3} ms",
            "total",
            self.total().as_secs_f64() * 1e3
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_recorded_in_order() {
        let mut t = Timings::new();
        t.phase("a");
        t.phase("b");
        t.phase("a");
        t.end();
        let names: Vec<_> = t.phases().iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(t.to_string().contains("total"));
    }
}
