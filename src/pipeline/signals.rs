//! Stop signals: Ctrl-C (SIGINT) and, on Unix, SIGTERM, which cron wrappers, `timeout`,
//! systemd and container runtimes send to stop a job. Both mean the same: the first asks the
//! run to stop cleanly (records in flight settle, the ledger is flushed, exit 3); the second
//! exits at once with code 3.
//!
//! The handlers are registered when [`Interrupts::register`] returns, not when the waiting
//! starts, so a signal that comes right after the run begins is not lost to the default
//! action (which would kill the process without a word).
//!
//! A run can add a stop of its own that takes the same path ([`Interrupts::also`]): a sync
//! state in S3 whose lease could not be renewed stops the run as Ctrl-C does, with its reason.

use std::io;

/// Registered signal handlers.
pub struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    /// Another reason to stop, sent once (a lost lease).
    also: Option<tokio::sync::oneshot::Receiver<String>>,
}

impl Interrupts {
    /// Registers the handlers. Must be called within a tokio runtime.
    pub fn register() -> io::Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                also: None,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts { also: None })
        }
    }

    /// Waits for the next stop signal; `false` if no more can come.
    pub async fn next(&mut self) -> bool {
        #[cfg(unix)]
        {
            tokio::select! {
                got = self.int.recv() => got.is_some(),
                got = self.term.recv() => got.is_some(),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.is_ok()
        }
    }

    /// Stops the run also when `reason` comes, as the first signal does, with that reason.
    pub fn also(mut self, reason: tokio::sync::oneshot::Receiver<String>) -> Interrupts {
        self.also = Some(reason);
        self
    }

    /// The first signal calls `stop` with `interrupted` (or the other reason, when it comes
    /// first); a second signal exits the process at once with code 3.
    pub async fn watch(mut self, stop: impl FnOnce(String)) {
        let reason = match self.also.take() {
            // A sender dropped without a reason (the run ended) leaves only the signals.
            Some(mut also) => tokio::select! {
                got = self.next() => got.then(|| "interrupted".to_owned()),
                Ok(reason) = &mut also => Some(reason),
            },
            None => self.next().await.then(|| "interrupted".to_owned()),
        };
        if let Some(reason) = reason {
            stop(reason);
            if self.next().await {
                std::process::exit(3);
            }
        }
    }
}
