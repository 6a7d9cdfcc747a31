//! The read-ahead stage: records read by id in full batches, ahead of the writes.
//!
//! ```text
//! reader ──jobs──▶ read-ahead ──jobs, read──▶ dispatcher ──permits──▶ record tasks
//!                   │ window: at most `[limits] read_ahead` records
//!                   │ a twin waits here for its turn (pipeline::twins)
//!                   │ batched reads (BatchGetProfile, 20 ids a call)
//! ```
//!
//! For a target that reads records by id in batches (Customer Profiles), the stage takes the
//! next records from the reader, at most `[limits] read_ahead` of them at a time (its window,
//! so memory stays flat). It asks of each whether it needs its read ([`Reads::wants`]: not
//! when it is invalid or the sync state settles it, and a record due for a refresh does); the
//! records that need none go on at once, the others are read [`Reads::batch`] ids a call, on
//! the read operation's own bucket, several calls at a time. A record reaches the dispatcher
//! with its read done, so `concurrency` bounds the writes in flight, not the reads.
//!
//! **When a batch goes out** (`Stage::due`): full, at once; partial, when the input has
//! ended, when the window is full and nothing else can free it, or when nothing else is on
//! its way to the writers (no record ready to hand on, no read in flight: they wait for it)
//! and its oldest id has waited [`LINGER`]. A write-bound run therefore reads in full
//! batches (its window is full of records waiting for a writer), a read-bound one too (its
//! batches fill while the reads before them are on the way), and a slow source or the end of
//! the input holds a record back [`LINGER`] (plus a read in flight) at most.
//!
//! **A twin is read after its turn came.** Rows naming the same target record take their
//! turns in input order (`pipeline::twins`, entered by the reader); the stage keeps no book
//! of its own. A record whose earlier twin has not settled ([`Reads::waits`]) waits in the
//! window until it has ([`Reads::wait`]), and is asked and read only then: it is never
//! handed a read taken before the earlier row's write, and it holds no write permit while it
//! waits (so twins cannot fill the dispatcher's permits while the row they wait for is still
//! here).
//!
//! A stop (the dispatcher drops its receiver) ends the stage: records it holds, read or not,
//! have no ledger entry, so a resumed run sends them again.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio::time::{Instant, sleep_until};

/// The longest a partial batch waits for more ids once the writers wait for it.
pub(super) const LINGER: Duration = Duration::from_millis(5);

/// What the stage asks of the run: whether a record waits for its turn, whether it needs
/// its read, how to read a batch. The pipeline implements it over its records and the
/// target; the stage only moves records and ids.
pub(super) trait Reads: Send + Sync + 'static {
    /// A record on its way.
    type Item: Send + 'static;
    /// One id's read.
    type Read: Send + 'static;

    /// Ids per read call.
    fn batch(&self) -> usize;

    /// Whether the record must wait for an earlier row naming the same target record.
    fn waits(item: &Self::Item) -> bool;

    /// Resolves once the earlier row settled (or never will: the run stopped).
    fn wait(item: Self::Item) -> impl Future<Output = Self::Item> + Send + 'static;

    /// The id to read the record by, or `None` when it goes on without a read (invalid,
    /// settled by the sync state, or not read by id).
    fn wants(&self, item: &mut Self::Item) -> impl Future<Output = Option<String>> + Send;

    /// Reads `ids` in one call: one read per id, in order (a record left without a read is
    /// read by its task).
    fn read(&self, ids: Vec<String>) -> impl Future<Output = Vec<Self::Read>> + Send;

    /// Hands the record its read.
    fn give(item: &mut Self::Item, read: Self::Read);
}

/// Runs the stage until the input ends and every record has been handed on, or until the
/// dispatcher stops taking records.
pub(super) async fn run<R: Reads>(
    reads: Arc<R>,
    mut input: mpsc::Receiver<R::Item>,
    output: mpsc::Sender<R::Item>,
    window: usize,
) {
    let mut stage = Stage::new(reads, window.max(1));
    let mut open = true;
    loop {
        stage.send_due(open, Instant::now());
        if !open && stage.len() == 0 {
            break;
        }
        let linger = stage.linger();
        tokio::select! {
            biased;
            () = output.closed() => break,
            permit = output.reserve(), if !stage.ready.is_empty() => match permit {
                Ok(permit) => permit.send(stage.ready.pop_front().expect("not empty")),
                Err(_) => break,
            },
            Some(done) = stage.reading.join_next_with_id(), if !stage.reading.is_empty() => {
                stage.read_done(done);
            }
            Some(turn) = stage.turns.join_next(), if !stage.turns.is_empty() => {
                // Waiting on a watch does not fail; a panic there is the stage's own.
                let item = turn.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
                stage.ask(item).await;
            }
            item = input.recv(), if open && stage.len() < stage.window => match item {
                Some(item) => stage.take(item).await,
                None => open = false,
            },
            () = sleep_until(linger.unwrap_or_else(Instant::now)), if linger.is_some() => {}
        }
    }
}

/// The stage's records, by where they are.
struct Stage<R: Reads> {
    reads: Arc<R>,
    window: usize,
    /// Twins waiting for their turn.
    turns: JoinSet<R::Item>,
    /// Records waiting for a batch, with their ids.
    waiting: Vec<(String, R::Item)>,
    /// When the oldest of `waiting` came.
    since: Option<Instant>,
    /// Batches on their way, and their records.
    reading: JoinSet<Vec<R::Read>>,
    in_read: HashMap<Id, Vec<R::Item>>,
    in_read_count: usize,
    /// Records ready for the dispatcher.
    ready: VecDeque<R::Item>,
}

impl<R: Reads> Stage<R> {
    fn new(reads: Arc<R>, window: usize) -> Stage<R> {
        Stage {
            reads,
            window,
            turns: JoinSet::new(),
            waiting: Vec::new(),
            since: None,
            reading: JoinSet::new(),
            in_read: HashMap::new(),
            in_read_count: 0,
            ready: VecDeque::new(),
        }
    }

    /// Records in the stage: the window's fill.
    fn len(&self) -> usize {
        self.turns.len() + self.waiting.len() + self.in_read_count + self.ready.len()
    }

    /// Takes a record from the input: it waits for its turn, or is asked at once.
    async fn take(&mut self, item: R::Item) {
        if R::waits(&item) {
            self.turns.spawn(R::wait(item));
        } else {
            self.ask(item).await;
        }
    }

    /// Asks whether the record needs its read: to a batch if it does, on at once if not.
    async fn ask(&mut self, mut item: R::Item) {
        match self.reads.wants(&mut item).await {
            Some(id) => {
                self.since.get_or_insert_with(Instant::now);
                self.waiting.push((id, item));
            }
            None => self.ready.push_back(item),
        }
    }

    /// Sends the batches that are due (see the module doc).
    fn send_due(&mut self, open: bool, now: Instant) {
        let batch = self.reads.batch().max(1);
        while self.waiting.len() >= batch {
            let rest = self.waiting.split_off(batch);
            let full = std::mem::replace(&mut self.waiting, rest);
            self.send(full);
        }
        if !self.waiting.is_empty() && self.due(open, now) {
            let partial = std::mem::take(&mut self.waiting);
            self.send(partial);
        }
        if self.waiting.is_empty() {
            self.since = None;
        }
    }

    /// Whether the partial batch in `waiting` goes now.
    fn due(&self, open: bool, now: Instant) -> bool {
        let stuck = self.len() >= self.window && self.in_read_count == 0 && self.ready.is_empty();
        let lingered = self.linger().is_some_and(|deadline| deadline <= now);
        !open || stuck || lingered
    }

    /// When the partial batch goes if nothing else comes: [`LINGER`] after its oldest id,
    /// once nothing else is on its way to the writers (no record ready, no read in flight).
    fn linger(&self) -> Option<Instant> {
        if self.waiting.is_empty() || !self.ready.is_empty() || self.in_read_count > 0 {
            return None;
        }
        self.since.map(|since| since + LINGER)
    }

    fn send(&mut self, batch: Vec<(String, R::Item)>) {
        let (ids, items): (Vec<String>, Vec<R::Item>) = batch.into_iter().unzip();
        let reads = Arc::clone(&self.reads);
        let task = self.reading.spawn(async move { reads.read(ids).await });
        self.in_read_count += items.len();
        self.in_read.insert(task.id(), items);
    }

    /// A batch came back: each record gets its read (none if the call's task failed: its
    /// task reads it then) and is ready.
    fn read_done(&mut self, done: Result<(Id, Vec<R::Read>), tokio::task::JoinError>) {
        let (id, reads) = match done {
            Ok((id, reads)) => (id, reads),
            Err(e) => (e.id(), Vec::new()),
        };
        let items = self.in_read.remove(&id).unwrap_or_default();
        self.in_read_count -= items.len();
        let mut reads = reads.into_iter();
        for mut item in items {
            if let Some(read) = reads.next() {
                R::give(&mut item, read);
            }
            self.ready.push_back(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::sync::watch;

    use super::*;

    /// A record of the tests: its number, the id it is read by, whether the sync state
    /// settles it, the earlier twin it waits for, and what the stage did with it.
    #[derive(Default)]
    struct Item {
        n: u32,
        id: Option<String>,
        by_state: bool,
        /// Set when the earlier twin settled (a stand-in for `twins::Turn`).
        earlier: Option<watch::Receiver<bool>>,
        /// Tells the next twin this record settled.
        done: Option<watch::Sender<bool>>,
        /// The batch (call number) it was read in.
        read: Option<usize>,
        /// It waited for its turn.
        twin: bool,
    }

    impl Item {
        fn settle(&self) {
            if let Some(done) = &self.done {
                done.send_replace(true);
            }
        }
    }

    /// Reads that take `latency` and log each call's ids.
    #[derive(Default)]
    struct Fake {
        latency: Duration,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Reads for Fake {
        type Item = Item;
        type Read = usize;

        fn batch(&self) -> usize {
            20
        }

        fn waits(item: &Item) -> bool {
            item.earlier.is_some()
        }

        async fn wait(mut item: Item) -> Item {
            if let Some(earlier) = &mut item.earlier {
                let _ = earlier.wait_for(|settled| *settled).await;
                item.twin = true;
            }
            item
        }

        async fn wants(&self, item: &mut Item) -> Option<String> {
            item.id.clone().filter(|_| item.twin || !item.by_state)
        }

        async fn read(&self, ids: Vec<String>) -> Vec<usize> {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(ids.clone());
                calls.len()
            };
            tokio::time::sleep(self.latency).await;
            vec![call; ids.len()]
        }

        fn give(item: &mut Item, read: usize) {
            item.read = Some(read);
        }
    }

    impl Fake {
        fn sizes(&self) -> Vec<usize> {
            self.calls.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    fn item(n: u32, id: &str) -> Item {
        Item {
            n,
            id: Some(id.to_owned()),
            ..Item::default()
        }
    }

    /// The stage over `fake` with this window, fed by the returned sender, handing on to
    /// the returned receiver (which holds `out` records).
    fn start(
        fake: &Arc<Fake>,
        window: usize,
        out: usize,
    ) -> (mpsc::Sender<Item>, mpsc::Receiver<Item>) {
        let (in_tx, in_rx) = mpsc::channel(1);
        let (out_tx, out_rx) = mpsc::channel(out);
        tokio::spawn(run(Arc::clone(fake), in_rx, out_tx, window));
        (in_tx, out_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn reads_twenty_ids_a_call_and_the_rest_at_the_end_of_the_input_at_once() {
        let fake = Arc::new(Fake::default());
        let (tx, mut rx) = start(&fake, 200, 100);
        let started = Instant::now();
        for n in 0..45 {
            tx.send(item(n, &format!("id{n}"))).await.unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            assert!(
                item.read.is_some(),
                "record {} reaches its worker read",
                item.n
            );
            got.push(item.n);
        }
        got.sort_unstable();
        assert_eq!(got, (0..45).collect::<Vec<_>>());
        assert_eq!(fake.sizes(), [20, 20, 5]);
        assert!(started.elapsed() < LINGER, "the last batch did not linger");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_source_holds_a_record_back_the_linger_at_most() {
        let fake = Arc::new(Fake::default());
        let (tx, mut rx) = start(&fake, 200, 100);
        for n in 0..3 {
            let sent = Instant::now();
            tx.send(item(n, &format!("id{n}"))).await.unwrap();
            let got = rx.recv().await.unwrap();
            assert_eq!((got.n, got.read), (n, Some(n as usize + 1)));
            assert!(sent.elapsed() <= LINGER, "{:?}", sent.elapsed());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(fake.sizes(), [1, 1, 1]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_bound_run_reads_in_full_batches() {
        // Writers take one record every 10 ms; reads take 2 ms. Without a window to read
        // ahead, each read would go out alone (the old leader-based batches).
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(2),
            ..Fake::default()
        });
        let (tx, mut rx) = start(&fake, 60, 4);
        tokio::spawn(async move {
            for n in 0..400 {
                tx.send(item(n, &format!("id{n}"))).await.unwrap();
            }
        });
        let mut count = 0;
        while let Some(item) = rx.recv().await {
            assert!(item.read.is_some());
            count += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count, 400);
        assert_eq!(fake.sizes(), vec![20; 20], "every call full");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_bound_run_fills_its_batches_while_reads_are_on_the_way() {
        // Records come one a millisecond, reads take 50 ms, writers are instant: only the
        // first batch (nothing else on the way) and the last (the end) are partial.
        let fake = Arc::new(Fake {
            latency: Duration::from_millis(50),
            ..Fake::default()
        });
        let (tx, mut rx) = start(&fake, 200, 4);
        tokio::spawn(async move {
            for n in 0..300 {
                tx.send(item(n, &format!("id{n}"))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let mut count = 0;
        while let Some(item) = rx.recv().await {
            assert!(item.read.is_some());
            count += 1;
        }
        assert_eq!(count, 300);
        let sizes = fake.sizes();
        assert_eq!(sizes[0], 6, "{sizes:?}");
        assert!(
            sizes[1..sizes.len() - 1].iter().all(|n| *n == 20),
            "{sizes:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_bounds_the_records_taken_from_the_input() {
        let fake = Arc::new(Fake::default());
        let (tx, rx) = start(&fake, 50, 4);
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let feeder = {
            let taken = Arc::clone(&taken);
            tokio::spawn(async move {
                for n in 0..1_000 {
                    if tx.send(item(n, &format!("id{n}"))).await.is_err() {
                        break;
                    }
                    taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        // The window, the dispatcher's channel and the input channel's one slot, no more.
        let taken = taken.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(taken, 50 + 4 + 1, "nobody takes from the output");
        // Two full batches; the rest of the window waits for room, not for a partial read.
        assert_eq!(fake.sizes(), [20, 20]);
        drop(rx);
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_the_state_settles_is_not_read() {
        let fake = Arc::new(Fake::default());
        let (tx, mut rx) = start(&fake, 200, 100);
        for n in 0..10 {
            let mut item = item(n, &format!("id{n}"));
            item.by_state = n % 2 == 0;
            tx.send(item).await.unwrap();
        }
        tx.send(Item {
            n: 10,
            ..Item::default()
        })
        .await
        .unwrap();
        drop(tx);
        let mut got = Vec::new();
        while let Some(item) = rx.recv().await {
            assert_eq!(
                item.read.is_some(),
                item.n % 2 == 1 && item.n < 10,
                "{}",
                item.n
            );
            got.push(item);
        }
        assert_eq!(got.len(), 11);
        assert_eq!(
            fake.calls.lock().unwrap().concat(),
            ["id1", "id3", "id5", "id7", "id9"]
        );
    }

    /// Records 0..4 for ids a, b, a, a: each `a` after the first waits for the one before.
    fn with_twins() -> Vec<Item> {
        let mut items: Vec<Item> = [(0, "a"), (1, "b"), (2, "a"), (3, "a")]
            .into_iter()
            .map(|(n, id)| item(n, id))
            .collect();
        for (before, after) in [(0, 2), (2, 3)] {
            let (tx, rx) = watch::channel(false);
            items[before].done = Some(tx);
            items[after].earlier = Some(rx);
        }
        items
    }

    #[tokio::test(start_paused = true)]
    async fn a_twin_is_read_only_after_the_record_before_it_settled() {
        let fake = Arc::new(Fake::default());
        let (tx, mut rx) = start(&fake, 200, 100);
        for item in with_twins() {
            tx.send(item).await.unwrap();
        }
        let first = rx.recv().await.unwrap();
        let second = rx.recv().await.unwrap();
        assert_eq!((first.n, second.n), (0, 1));
        assert!(!first.twin && first.read == Some(1));
        // Record 2 waits for record 0: nothing more comes, however long.
        let nothing = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(
            nothing.is_err(),
            "a twin went on before its predecessor settled"
        );
        first.settle();
        let third = rx.recv().await.unwrap();
        assert_eq!((third.n, third.twin, third.read), (2, true, Some(2)));
        drop(tx);
        second.settle();
        let nothing = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(nothing.is_err(), "record 3 waits for record 2");
        third.settle();
        let fourth = rx.recv().await.unwrap();
        assert_eq!((fourth.n, fourth.read), (3, Some(3)));
        assert!(rx.recv().await.is_none(), "the stage ends with its input");
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(calls, [vec!["a", "b"], vec!["a"], vec!["a"]]);
    }

    #[tokio::test(start_paused = true)]
    async fn twins_waiting_hold_back_no_other_record() {
        // A window of 5 with three records waiting for their turn: the others still go on
        // through the two places left, read.
        let fake = Arc::new(Fake::default());
        let (tx, mut rx) = start(&fake, 5, 100);
        let mut items = with_twins();
        let (tx0, rx0) = watch::channel(false);
        items[0].earlier = Some(rx0); // record 0 waits for a row outside the stage
        let feeder = tokio::spawn(async move {
            for item in items {
                tx.send(item).await.unwrap();
            }
            for n in 4..10 {
                tx.send(item(n, &format!("id{n}"))).await.unwrap();
            }
        });
        let mut got = Vec::new();
        for _ in 0..7 {
            let next = rx.recv().await.unwrap();
            assert!(next.read.is_some());
            got.push(next.n);
        }
        assert_eq!(got, [1, 4, 5, 6, 7, 8, 9], "0, 2 and 3 wait their turn");
        tx0.send_replace(true);
        let zero = rx.recv().await.unwrap();
        zero.settle();
        let two = rx.recv().await.unwrap();
        two.settle();
        let three = rx.recv().await.unwrap();
        assert_eq!((zero.n, two.n, three.n), (0, 2, 3));
        feeder.await.unwrap();
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_stage_ends_when_the_dispatcher_stops() {
        let fake = Arc::new(Fake {
            latency: Duration::from_secs(60),
            ..Fake::default()
        });
        let (in_tx, in_rx) = mpsc::channel(1);
        let (out_tx, out_rx) = mpsc::channel(4);
        let stage = tokio::spawn(run(Arc::clone(&fake), in_rx, out_tx, 200));
        for n in 0..30 {
            in_tx.send(item(n, &format!("id{n}"))).await.unwrap();
        }
        drop(out_rx);
        tokio::time::timeout(Duration::from_secs(1), stage)
            .await
            .expect("the stage ends at once, reads in flight or not")
            .unwrap();
        assert!(
            in_tx.send(item(99, "late")).await.is_err(),
            "the input is closed"
        );
    }
}
