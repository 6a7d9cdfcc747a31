//! Seeded fault injection: a share of 5xx answers, a share of dropped connections, a share
//! of requests applied whose answer is then lost, and a
//! fixed added latency, drawn from one seeded generator so that a run repeats; plus fixed
//! ProfileIds that BatchGetProfile answers with a per-id error entry.
//!
//! Every API request draws exactly one number, whatever the outcome, so the number of
//! faults among the first N requests depends only on the seed and the rates.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// What fault injection does to API requests; the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Share of requests (0.0–1.0) answered with a 500 internal error.
    pub error_rate: f64,
    /// Share of requests (0.0–1.0) whose connection is closed without any response.
    pub drop_rate: f64,
    /// Share of requests (0.0–1.0) that are applied, then their connection is closed without
    /// the answer (a create whose answer was lost: the client cannot know it happened).
    pub lose_answer_rate: f64,
    /// Delay added before every API request is handled.
    pub latency: Duration,
    /// Seed of the generator that picks the faulty requests.
    pub seed: u64,
}

impl FaultConfig {
    /// Checks that both shares lie in 0.0–1.0 and add up to at most 1.0.
    pub fn check(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error rate", self.error_rate),
            ("drop rate", self.drop_rate),
            ("lost answer rate", self.lose_answer_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if self.error_rate + self.drop_rate + self.lose_answer_rate > 1.0 {
            return Err("the error, drop and lost answer rates add up to more than 1".to_string());
        }
        Ok(())
    }
}

/// The fate of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Handle normally.
    None,
    /// Answer with a 500 internal error.
    Error,
    /// Close the connection without answering.
    Drop,
    /// Handle normally, then close the connection without the answer.
    LoseAnswer,
}

/// The seeded generator and the configuration it serves.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: StdRng,
    batch_error_ids: Vec<String>,
}

impl Faults {
    /// A generator seeded from `config.seed`.
    pub fn new(config: FaultConfig) -> Faults {
        let rng = StdRng::seed_from_u64(config.seed);
        Faults {
            config,
            rng,
            batch_error_ids: Vec::new(),
        }
    }

    /// Makes BatchGetProfile answer each of `ids` with an error entry.
    pub fn with_batch_errors(mut self, ids: Vec<String>) -> Faults {
        self.batch_error_ids = ids;
        self
    }

    /// Whether BatchGetProfile answers `id` with an error entry.
    pub fn batch_error(&self, id: &str) -> bool {
        self.batch_error_ids.iter().any(|e| e == id)
    }

    /// The seed the generator started from.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The added latency.
    pub fn latency(&self) -> Duration {
        self.config.latency
    }

    /// Draws the fate of the next request.
    pub fn roll(&mut self) -> Fault {
        let c = &self.config;
        if c.error_rate == 0.0 && c.drop_rate == 0.0 && c.lose_answer_rate == 0.0 {
            return Fault::None;
        }
        let draw: f64 = self.rng.random();
        if draw < c.drop_rate {
            Fault::Drop
        } else if draw < c.drop_rate + c.error_rate {
            Fault::Error
        } else if draw < c.drop_rate + c.error_rate + c.lose_answer_rate {
            Fault::LoseAnswer
        } else {
            Fault::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(config: &FaultConfig, n: usize) -> (usize, usize) {
        let mut faults = Faults::new(config.clone());
        let fates: Vec<Fault> = (0..n).map(|_| faults.roll()).collect();
        let errors = fates.iter().filter(|f| **f == Fault::Error).count();
        let drops = fates.iter().filter(|f| **f == Fault::Drop).count();
        (errors, drops)
    }

    #[test]
    fn same_seed_same_faults() {
        let config = FaultConfig {
            error_rate: 0.3,
            drop_rate: 0.1,
            seed: 7,
            ..FaultConfig::default()
        };
        let first = count(&config, 1000);
        assert_eq!(first, count(&config, 1000));
        assert!((200..400).contains(&first.0), "{first:?}");
        assert!((50..150).contains(&first.1), "{first:?}");
    }

    #[test]
    fn rates_are_checked() {
        let bad = FaultConfig {
            error_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(bad.check().is_err());
    }
}
