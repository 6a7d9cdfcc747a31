//! `[limits] shared`: one account-wide quota in Redis (issue 17, item 3). The GCRA script
//! against a real `redis-server`, three processes sharing the emulator's 100/s UpdateProfile
//! quota, and the two ways Redis fails: unreachable at the start (exit 3, nothing sent) and
//! killed during a run (the run finishes at `rate / shared_peers` and says so).

use std::sync::Arc;
use std::time::{Duration, Instant};

use profilesync::emulator::EmulatorHandle;
use profilesync::limiter::shared::{SharedQuota, Verdict};
use profilesync::limiter::{Limiters, RateSetting};
use profilesync::state::TargetIdentity;

use crate::support::{
    APPLY, BY_ID, Dir, RedisServer, assert_every_record_once, command, config, customers,
    customers_dir, free_port, seeded, stderr, wait_for_entries,
};

/// A scratch folder whose `in.csv` holds `customers` `from..=to` (one slice of the seed) and
/// whose `c.toml` has `limits`.
fn slice(from: u32, to: u32, limits: &str) -> Dir {
    let dir = Dir::new();
    let all = customers(to);
    let mut lines = all.lines();
    let mut csv = format!("{}\n", lines.next().unwrap_or_default());
    for line in lines.skip(from as usize - 1) {
        csv.push_str(line);
        csv.push('\n');
    }
    dir.write("in.csv", csv);
    dir.write("c.toml", config(limits, BY_ID));
    dir
}

/// 40/s shared; with Redis lost, 40 / 4 peers = 10/s on each operation's local bucket.
fn fallback_limits(redis: &RedisServer) -> String {
    format!(
        "rate = 40\nburst = 4\nconcurrency = 4\nshared = \"{}\"\nshared_peers = 4",
        redis.url()
    )
}

/// Requests the emulator answered, and of them throttled (429), over every operation.
fn answered_and_throttled(emulator: &EmulatorHandle) -> (u64, u64) {
    let stats = emulator.stats();
    stats
        .operations
        .values()
        .fold((0, 0), |(all, throttled), op| {
            (all + op.requests, throttled + op.status(429))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gcra_script_lets_a_burst_through_then_paces_on_the_servers_clock() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let account = TargetIdentity::customer_profiles("111122223333", "us-east-1", "http://e", "a");
    // Two processes of one account, and one of another account.
    let first = SharedQuota::connect(&redis.url(), 4).await.expect("Redis");
    let second = SharedQuota::connect(&redis.url(), 4).await.expect("Redis");
    let other = SharedQuota::connect(&redis.url(), 4).await.expect("Redis");
    let interval = Duration::from_millis(200);
    // Before the account is known, Redis is not asked.
    assert_eq!(first.take("UpdateProfile", interval, 3).await, None);
    first.bind("customer-profiles:111122223333:us-east-1");
    second.bind(&account.quota_scope());
    other.bind("customer-profiles:999988887777:us-east-1");

    // A burst of 3 for the account, whichever process asks.
    assert_eq!(
        first.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Go)
    );
    assert_eq!(
        second.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Go)
    );
    assert_eq!(
        first.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Go)
    );
    let Some(Verdict::Wait(wait)) = second.take("UpdateProfile", interval, 3).await else {
        panic!("a fourth token at once");
    };
    assert!(wait > Duration::ZERO && wait <= interval, "{wait:?}");
    // Another operation and another account have buckets of their own.
    assert_eq!(
        first.take("SearchProfiles", interval, 3).await,
        Some(Verdict::Go)
    );
    assert_eq!(
        other.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Go)
    );
    // After the wait the next token is there, and only one.
    tokio::time::sleep(wait).await;
    assert_eq!(
        second.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Go)
    );
    assert!(matches!(
        first.take("UpdateProfile", interval, 3).await,
        Some(Verdict::Wait(_))
    ));

    // Over 1.5 s, two processes taking as fast as they are told get 1.5 × 5/s + the burst.
    first.bind("ignored: only the first bind counts");
    let start = Instant::now();
    let mut granted = 0;
    let fast = Duration::from_millis(200);
    let (a, b) = (
        SharedQuota::connect(&redis.url(), 4).await.expect("Redis"),
        SharedQuota::connect(&redis.url(), 4).await.expect("Redis"),
    );
    a.bind("paced");
    b.bind("paced");
    while start.elapsed() < Duration::from_millis(1_500) {
        for quota in [&a, &b] {
            match quota.take("Op", fast, 2).await {
                Some(Verdict::Go) => granted += 1,
                Some(Verdict::Wait(w)) => {
                    tokio::time::sleep(w.min(Duration::from_millis(20))).await
                }
                None => panic!("Redis is up"),
            }
        }
    }
    assert!(
        (8..=10).contains(&granted),
        "{granted} tokens in 1.5 s at 5/s, burst 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_redis_quota_within_the_emulators() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The emulator's UpdateProfile quota: 100/s, bucket 100. Each process is told the
    // account-wide budget, 100/s.
    let (per_process, processes) = (300, 3);
    let emulator = seeded(per_process * processes).await;
    let limits = format!(
        "rate = 100\nburst = 10\nconcurrency = 8\nshared = \"{}\"",
        redis.url()
    );
    let dirs: Vec<Dir> = (0..processes)
        .map(|p| slice(p * per_process + 1, (p + 1) * per_process, &limits))
        .collect();
    let start = Instant::now();
    let children: Vec<_> = dirs
        .iter()
        .map(|dir| command(dir, &emulator, &APPLY).spawn())
        .collect();
    for (dir, child) in dirs.iter().zip(children) {
        let run = child.wait().await;
        run.assert_exit(0);
        assert_every_record_once(&dir.ledger("l.jsonl"), u64::from(per_process));
    }
    let wall = start.elapsed().as_secs_f64();

    let updates = emulator.stats().operation("UpdateProfile");
    let total = u64::from(per_process * processes);
    assert_eq!(updates.status(200), total);
    let (answered, throttled) = answered_and_throttled(&emulator);
    let share = throttled as f64 / answered as f64;
    assert!(
        share <= 0.01,
        "{throttled} of {answered} requests throttled"
    );
    // The quota-bound minimum: the emulator's bucket of 100 at once, the rest at 100/s.
    let minimum = (total - 100) as f64 / 100.0;
    eprintln!(
        "three processes in one Redis quota: {wall:.1} s (minimum {minimum:.1} s), \
         {throttled} of {answered} requests throttled"
    );
    assert!(
        wall <= 1.15 * minimum + 4.0,
        "{wall:.1} s for {total} updates (minimum {minimum:.1} s)"
    );
    // Together they kept to the shared budget (100/s, burst 10), not 3 × 100/s.
    assert!(
        updates.max_accepted_in_any_second <= 115,
        "{} UpdateProfile in one second",
        updates.max_accepted_in_any_second
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_exits_3_naming_it_and_sends_nothing() {
    let emulator = seeded(5).await;
    let dir = customers_dir(
        5,
        &format!(
            "rate = 100\nshared = \"redis://:canary-secret@127.0.0.1:{}/0\"",
            free_port()
        ),
    );
    let run = command(&dir, &emulator, &APPLY).output().await;
    let err = stderr(&run);
    run.assert_exit(3);
    assert!(
        err.contains("Redis at redis://:***@127.0.0.1:") && err.contains("unreachable"),
        "{err}"
    );
    assert!(!err.contains("canary-secret"), "{err}");
    assert_eq!(
        answered_and_throttled(&emulator),
        (0, 0),
        "a request was sent"
    );
    assert!(!dir.path("l.jsonl").exists(), "a ledger was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_the_run_finishes_at_the_fallback_rate_and_says_so() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let n = 100;
    let emulator = seeded(n).await;
    let dir = customers_dir(n, &fallback_limits(&redis));
    let child = command(&dir, &emulator, &APPLY).spawn();
    wait_for_entries(&dir.path("l.jsonl"), 20).await;
    redis.kill();
    let killed = Instant::now();
    let before = emulator.stats().operation("UpdateProfile").status(200);
    let run = child.wait().await;
    let after_kill = killed.elapsed().as_secs_f64();
    let err = stderr(&run);
    run.assert_exit(0);
    assert_every_record_once(&dir.ledger("l.jsonl"), u64::from(n));
    assert!(
        err.contains("lost Redis"),
        "a warning when it is lost: {err}"
    );
    assert!(
        err.contains("was lost during the run") && err.contains("rate / 4"),
        "and at the end: {err}"
    );
    assert_eq!(
        err.matches("lost Redis").count(),
        1,
        "the warning comes once: {err}"
    );
    // The rest went at 10/s (at 40/s it would have taken a quarter of that).
    let rest = (u64::from(n) - before) as f64;
    assert!(
        rest >= 40.0,
        "only {rest} updates were left when Redis was killed"
    );
    assert!(
        after_kill >= 0.85 * (rest - 1.0) / 10.0,
        "{rest} updates in {after_kill:.1} s after Redis was lost"
    );
    assert_eq!(emulator.stats().operation("UpdateProfile").status(429), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rate_stays_local_and_below_the_shared_start_rate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let auto = RateSetting::Auto {
        start: 10.0,
        burst: 2,
    };
    let fixed = RateSetting::Fixed {
        rate: 1000.0,
        burst: 1,
    };
    // Two processes at `rate = "auto"`, start 10/s, sharing the account's bucket.
    let mut processes = Vec::new();
    for _ in 0..2 {
        let quota = SharedQuota::connect(&redis.url(), 4).await.expect("Redis");
        let limiters = Arc::new(Limiters::with_shared(
            [("Op", auto)],
            fixed,
            Arc::new(quota),
        ));
        limiters.bind("customer-profiles:1:r");
        processes.push(limiters);
    }
    let start = Instant::now();
    let run_for = Duration::from_millis(1_500);
    let tasks: Vec<_> = processes
        .iter()
        .map(|limiters| {
            let limiters = Arc::clone(limiters);
            tokio::spawn(async move {
                let mut granted = 0u32;
                while start.elapsed() < run_for {
                    limiters.get("Op").acquire().await;
                    granted += 1;
                }
                granted
            })
        })
        .collect();
    let mut together = 0;
    for task in tasks {
        together += task.await.expect("a process");
    }
    // Together never above the shared start rate (10/s, burst 2), though each process's
    // AIMD bucket alone would let 10/s through.
    assert!(
        (12..=18).contains(&together),
        "{together} tokens in 1.5 s for two processes at auto, start 10/s"
    );

    // A throttle slows one process's own bucket below the shared rate (× 0.7, about 7/s):
    // after a rest, 8 tokens take its burst of 2 and then 6 at its own rate, not at 10/s.
    let slowed = processes[0].get("Op");
    let before = slowed.current_rate();
    slowed.on_throttle();
    let rate = slowed.current_rate();
    assert!(
        before <= 10.0,
        "the local rate grew above the shared one: {before}"
    );
    assert!((rate - 0.7 * before).abs() < 1e-9, "{before} → {rate}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    for _ in 0..8 {
        slowed.acquire().await;
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(
        secs >= 0.9 * 6.0 / rate && secs > 0.7,
        "8 tokens at {rate:.1}/s took {secs:.2} s (at the shared 10/s: 0.6 s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_back_during_the_run_the_run_goes_back_to_it() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let n = 120;
    let emulator = seeded(n).await;
    let dir = customers_dir(n, &fallback_limits(&redis));
    let child = command(&dir, &emulator, &APPLY).spawn();
    wait_for_entries(&dir.path("l.jsonl"), 10).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    let run = child.wait().await;
    let err = stderr(&run);
    run.assert_exit(0);
    assert_every_record_once(&dir.ledger("l.jsonl"), u64::from(n));
    assert!(err.contains("lost Redis"), "{err}");
    assert!(err.contains("Redis is back"), "{err}");
    assert!(
        err.contains("it was back by the end of the run"),
        "the end says so: {err}"
    );
}
