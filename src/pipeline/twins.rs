//! Twins: rows of one input that name the same target record (the same id, or the same
//! search value). They are one record to the target, applied one after another in input
//! order, never in parallel, so the last row wins every time; a later row updates the
//! record an earlier one found or created instead of creating another.
//!
//! The reader calls [`Twins::enter`] for each valid record, in input order, before the
//! record goes on (to the read-ahead stage, which holds a waiting twin back until its turn
//! came, then to the dispatcher). A row whose key is still in flight gets a [`Turn`] that waits
//! for the earlier row's settlement; a row whose earlier twin settled already gets what
//! that twin left behind (the record it created, or in `plan` that it would create one).
//! When its task ends, [`Turn::finish`] hands its own settlement to the next twin.
//!
//! Memory: every key of the run is remembered as a 64-bit hash with its first record
//! number (about 20 bytes a record), so that twins far apart in the input are still seen
//! and counted; the settlements kept are those of creates only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use xxhash_rust::xxh3::xxh3_64;

use crate::ledger::Status;
use crate::targets::driver::Twin;

/// The run's book of keys.
#[derive(Default)]
pub struct Twins {
    book: Mutex<Book>,
}

#[derive(Default)]
struct Book {
    /// Every key seen this run → the record number of its first row.
    first: HashMap<u64, u64>,
    /// Keys whose earlier row created (or, in `plan`, would create) the target record.
    created: HashMap<u64, Box<Twin>>,
    /// The last row of each key still in flight, and where its settlement will come.
    in_flight: HashMap<u64, (u64, watch::Receiver<Option<Twin>>)>,
    /// Rows whose key an earlier row of the input had.
    duplicates: u64,
}

/// One row's place among its twins.
pub struct Turn {
    twins: Arc<Twins>,
    key: u64,
    record: u64,
    /// The record number of the first row with this key.
    first: u64,
    /// The earlier twin still in flight, to wait for.
    wait: Option<watch::Receiver<Option<Twin>>>,
    /// What an earlier twin that settled already left behind.
    before: Option<Twin>,
    /// Whether an earlier row of the input has this key.
    pub seen: bool,
    done: watch::Sender<Option<Twin>>,
}

impl Twins {
    /// Takes the next valid row, in input order: its key is its target id or search value.
    pub fn enter(self: &Arc<Self>, key: &str, record: u64) -> Turn {
        let key = xxh3_64(key.as_bytes());
        let (done, rx) = watch::channel(None);
        let mut book = self.lock();
        let first = *book.first.entry(key).or_insert(record);
        let seen = first != record;
        if seen {
            book.duplicates += 1;
        }
        let wait = book.in_flight.insert(key, (record, rx)).map(|(_, rx)| rx);
        let before = match (&wait, seen) {
            (None, true) => Some(book.created.get(&key).map_or(
                Twin {
                    first,
                    status: Status::Unchanged,
                    target_id: None,
                },
                |t| (**t).clone(),
            )),
            _ => None,
        };
        Turn {
            twins: Arc::clone(self),
            key,
            record,
            first,
            wait,
            before,
            seen,
            done,
        }
    }

    /// Rows whose key an earlier row of the input had.
    pub fn duplicates(&self) -> u64 {
        self.lock().duplicates
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Turn {
    /// Whether an earlier twin was still in flight when this row entered: it waits for it.
    pub fn waits(&self) -> bool {
        self.wait.is_some()
    }

    /// The earlier twin, once it settled; `Err` when it never will (the run stopped before
    /// it settled: this row must not settle either, so that a resumed run sends both in
    /// order).
    pub async fn earlier(&mut self) -> Result<Option<Twin>, ()> {
        let Some(rx) = &mut self.wait else {
            return Ok(self.before.clone());
        };
        match rx.wait_for(Option::is_some).await {
            Ok(twin) => Ok(twin.clone()),
            Err(_) => Err(()),
        }
    }

    /// Hands this row's settlement to its next twin (none when it did not settle).
    pub fn finish(self, settled: Option<(Status, Option<String>)>) {
        let mut book = self.twins.lock();
        if let Some((status, target_id)) = &settled
            && matches!(status, Status::Created | Status::WouldCreate)
        {
            book.created.insert(
                self.key,
                Box::new(Twin {
                    first: self.first,
                    status: *status,
                    target_id: target_id.clone(),
                }),
            );
        }
        if book
            .in_flight
            .get(&self.key)
            .is_some_and(|(r, _)| *r == self.record)
        {
            book.in_flight.remove(&self.key);
        }
        drop(book);
        if let Some((status, target_id)) = settled {
            let _ = self.done.send(Some(Twin {
                first: self.first,
                status,
                target_id,
            }));
        }
        // Dropping `done` without a value tells a waiting twin that this row never settled.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_twin_waits_for_the_row_before_it_and_gets_what_it_created() {
        let twins = Arc::new(Twins::default());
        let first = twins.enter("ada@example.com", 1);
        let mut second = twins.enter("ada@example.com", 2);
        let mut other = twins.enter("bob@example.com", 3);
        assert!(!first.seen && second.seen && !other.seen);
        assert_eq!(other.earlier().await, Ok(None));
        let waiting = tokio::spawn(async move { (second.earlier().await, second) });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second row waits for the first");
        first.finish(Some((Status::Created, Some("p1".into()))));
        let (twin, second) = waiting.await.unwrap();
        let twin = twin.unwrap().expect("a twin");
        assert_eq!((twin.first, twin.target_id.as_deref()), (1, Some("p1")));
        second.finish(Some((Status::Updated, Some("p1".into()))));
        // A third row, after both settled, still finds the created record.
        let mut third = twins.enter("ada@example.com", 4);
        let twin = third.earlier().await.unwrap().expect("a twin");
        assert_eq!(twin.target_id.as_deref(), Some("p1"));
        assert_eq!(twins.duplicates(), 2);
    }

    #[tokio::test]
    async fn a_row_that_never_settles_stops_its_twin() {
        let twins = Arc::new(Twins::default());
        let first = twins.enter("k", 1);
        let mut second = twins.enter("k", 2);
        first.finish(None);
        assert_eq!(second.earlier().await, Err(()));
    }
}
