//! Stop signals: Ctrl-C (SIGINT) and, on Unix, SIGTERM, which cron wrappers, `timeout`,
//! systemd and container runtimes send to stop a job. Both mean the same: the first asks the
//! run to stop cleanly (records in flight settle, the ledger is flushed, exit 3); the second
//! exits at once with code 3.
//!
//! The handlers are registered when [`Interrupts::register`] returns, not when the waiting
//! starts, so a signal that comes right after the run begins is not lost to the default
//! action (which would kill the process without a word).

use std::io;

/// Registered signal handlers.
pub struct Interrupts {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
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
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Interrupts {})
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

    /// The first signal calls `stop`; the second exits the process at once with code 3.
    pub async fn watch(mut self, stop: impl FnOnce()) {
        if self.next().await {
            stop();
            if self.next().await {
                std::process::exit(3);
            }
        }
    }
}
