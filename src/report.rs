//! Reporting: the progress line while a run goes, and the summary at its end. The only
//! module that prints run results.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::Status;

/// Counts of records per status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; Status::ALL.len()],
}

impl Tally {
    /// Counts one record.
    pub fn add(&mut self, status: Status) {
        self.counts[index(status)] += 1;
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
    }

    /// Records with this status.
    pub fn get(&self, status: Status) -> u64 {
        self.counts[index(status)]
    }

    /// All records counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Records that make the run exit 1.
    pub fn failures(&self) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.is_failure())
            .map(|s| self.get(*s))
            .sum()
    }
}

fn index(status: Status) -> usize {
    Status::ALL
        .iter()
        .position(|s| *s == status)
        .expect("every status is in ALL")
}

/// A progress line on standard error, shown only on a terminal: a bar with an ETA when the
/// input's size is known, else a spinner; records, records/s, outcomes and the current rate.
pub struct Progress {
    bar: Option<ProgressBar>,
    input: Option<Arc<AtomicU64>>,
    records: AtomicU64,
}

impl Progress {
    /// A progress line, unless it is switched off or standard error is not a terminal.
    /// `input` is (bytes read so far, total bytes) of the input, when known.
    pub fn new(enabled: bool, command: &str, input: (Arc<AtomicU64>, Option<u64>)) -> Progress {
        let off = Progress {
            bar: None,
            input: None,
            records: AtomicU64::new(0),
        };
        if !enabled || !io::stderr().is_terminal() {
            return off;
        }
        let (read, size) = input;
        let (bar, template) = match size {
            Some(size) => (
                ProgressBar::new(size),
                "{prefix} [{wide_bar}] {percent:>3}% ETA {eta:<4} {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {prefix} {elapsed} {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_prefix(command.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            input: size.map(|_| read),
            records: AtomicU64::new(0),
        }
    }

    /// Counts settled records and refreshes the line; `rate` is the limiter's current rate.
    pub fn advance(&self, records: u64, tally: &Tally, rate: Option<f64>) {
        let Some(bar) = &self.bar else { return };
        let total = self.records.fetch_add(records, Ordering::Relaxed) + records;
        if let Some(read) = &self.input {
            bar.set_position(read.load(Ordering::Relaxed));
        }
        let secs = bar.elapsed().as_secs_f64().max(0.001);
        let mut msg = format!("{total} records, {:.0}/s", total as f64 / secs);
        for status in Status::ALL {
            let n = tally.get(status);
            if n > 0 && status != Status::Valid {
                msg.push_str(&format!(", {n} {}", status.name()));
            }
        }
        if let Some(rate) = rate {
            msg.push_str(&format!(", limit {rate:.0}/s"));
        }
        bar.set_message(msg);
    }

    /// Removes the progress line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Writes the end-of-run summary: counts per status, time, rate, and the ledger's path.
pub fn summary(
    out: &mut dyn Write,
    command: &str,
    tally: &Tally,
    elapsed: Duration,
    ledger: &Path,
) -> io::Result<()> {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        tally.total() as f64 / secs
    } else {
        0.0
    };
    writeln!(
        out,
        "{command}: {} records in {secs:.2} s ({rate:.0} records/s)",
        tally.total()
    )?;
    for status in Status::ALL {
        let n = tally.get(status);
        if n > 0 {
            writeln!(out, "  {:<13}{n:>10}", status.name())?;
        }
    }
    writeln!(out, "ledger: {}", ledger.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_nonzero_statuses_and_the_ledger() {
        let mut tally = Tally::default();
        for _ in 0..3 {
            tally.add(Status::Valid);
        }
        tally.add(Status::Invalid);
        assert_eq!(tally.total(), 4);
        assert_eq!(tally.failures(), 1);
        let mut out = Vec::new();
        summary(
            &mut out,
            "check",
            &tally,
            Duration::from_secs(2),
            Path::new("l.jsonl"),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("check: 4 records in 2.00 s (2 records/s)\n"),
            "{text}"
        );
        assert!(text.contains("  valid                 3\n"));
        assert!(text.contains("  invalid               1\n"));
        assert!(!text.contains("failed"));
        assert!(text.ends_with("ledger: l.jsonl\n"));
    }
}
