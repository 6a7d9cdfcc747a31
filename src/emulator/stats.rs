//! Per-operation statistics: requests by HTTP status, dropped connections, and the times of
//! accepted requests, so that a test can prove a client never went over its rate.
//!
//! A request is *accepted* when it got past the quota (it took a token), whatever the
//! handler then answered: a 400 or a 404 still counts against the real service's quota.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::operation::Operation;

/// A snapshot of the statistics of every operation that saw at least one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Per operation name (`UpdateProfile`, `GenesysPutProfile`, ...).
    pub operations: BTreeMap<String, OperationStats>,
}

impl Stats {
    /// The statistics of one operation; all zero if it saw no request.
    pub fn operation(&self, name: &str) -> OperationStats {
        self.operations.get(name).cloned().unwrap_or_default()
    }
}

/// What one operation saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OperationStats {
    /// Every request that reached the operation, including dropped ones.
    pub requests: u64,
    /// Responses by HTTP status code (as a string key, so the JSON is an object).
    pub by_status: BTreeMap<String, u64>,
    /// Connections closed by fault injection, without a response.
    pub dropped: u64,
    /// Requests that got past the quota.
    pub accepted: u64,
    /// Accepted requests per one-second window since the emulator started (index = second).
    pub accepted_per_second: Vec<u64>,
    /// The most accepted requests in any sliding one-second window.
    pub max_accepted_in_any_second: u64,
}

impl OperationStats {
    /// How many responses had this HTTP status.
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code.to_string()).copied().unwrap_or(0)
    }
}

/// The running record kept by the server.
#[derive(Debug, Default)]
pub struct Recorder {
    operations: BTreeMap<Operation, Running>,
}

#[derive(Debug, Default)]
struct Running {
    requests: u64,
    by_status: BTreeMap<u16, u64>,
    dropped: u64,
    /// Offsets from the emulator's start of every accepted request, in arrival order.
    accepted_at: Vec<Duration>,
}

impl Recorder {
    /// Notes a response with `status` to a request for `op`.
    pub fn response(&mut self, op: Operation, status: u16) {
        let running = self.operations.entry(op).or_default();
        running.requests += 1;
        *running.by_status.entry(status).or_default() += 1;
    }

    /// Notes a connection for `op` dropped without a response.
    pub fn dropped(&mut self, op: Operation) {
        let running = self.operations.entry(op).or_default();
        running.requests += 1;
        running.dropped += 1;
    }

    /// Notes that a request for `op` got past the quota at `since_start`.
    pub fn accepted(&mut self, op: Operation, since_start: Duration) {
        let running = self.operations.entry(op).or_default();
        running.accepted_at.push(since_start);
    }

    /// Forgets everything recorded so far.
    pub fn clear(&mut self) {
        self.operations.clear();
    }

    /// A snapshot of all operations.
    pub fn snapshot(&self) -> Stats {
        let operations = self
            .operations
            .iter()
            .map(|(op, running)| (op.name().to_string(), running.summary()))
            .collect();
        Stats { operations }
    }
}

impl Running {
    fn summary(&self) -> OperationStats {
        let mut times = self.accepted_at.clone();
        times.sort_unstable();
        OperationStats {
            requests: self.requests,
            by_status: self
                .by_status
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            dropped: self.dropped,
            accepted: times.len() as u64,
            accepted_per_second: per_second(&times),
            max_accepted_in_any_second: max_in_window(&times, Duration::from_secs(1)),
        }
    }
}

/// Counts sorted offsets per whole second.
fn per_second(sorted: &[Duration]) -> Vec<u64> {
    let mut counts = Vec::new();
    for t in sorted {
        let second = usize::try_from(t.as_secs()).unwrap_or(usize::MAX);
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
    }
    counts
}

/// The largest number of sorted offsets inside any half-open window `[t, t + width)`.
fn max_in_window(sorted: &[Duration], width: Duration) -> u64 {
    let mut best = 0;
    let mut start = 0;
    for (end, t) in sorted.iter().enumerate() {
        while *t >= sorted[start] + width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn sliding_window_finds_straddling_bursts() {
        let times = ms(&[100, 900, 950, 1050, 1100, 2500]);
        assert_eq!(per_second(&times), vec![3, 2, 1]);
        assert_eq!(max_in_window(&times, Duration::from_secs(1)), 4);
        assert_eq!(
            max_in_window(&ms(&[0, 1000, 2000]), Duration::from_secs(1)),
            1
        );
        assert_eq!(max_in_window(&[], Duration::from_secs(1)), 0);
    }

    #[test]
    fn snapshot_counts_statuses() {
        let mut recorder = Recorder::default();
        recorder.response(Operation::UpdateProfile, 200);
        recorder.response(Operation::UpdateProfile, 429);
        recorder.dropped(Operation::UpdateProfile);
        recorder.accepted(Operation::UpdateProfile, Duration::from_millis(10));
        let stats = recorder.snapshot().operation("UpdateProfile");
        assert_eq!(stats.requests, 3);
        assert_eq!(stats.status(200), 1);
        assert_eq!(stats.status(429), 1);
        assert_eq!(stats.dropped, 1);
        assert_eq!(stats.accepted, 1);
    }
}
