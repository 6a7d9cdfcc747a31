//! The sync state in S3 under a lease: real binary, real emulator, a real S3 server (moto's,
//! on loopback; skipped without it unless CI is set), and in-process a server that ignores
//! conditional writes.

use std::time::{Duration, Instant};

use profilesync::emulator::EmulatorHandle;
use serde_json::json;

use crate::support::{
    BY_ID, Child, Dir, MotoServer, command, config, count, customers, seeded, slow_emulator,
    sync_args,
};

const BUCKET: &str = "nightly-state";
const LIMITS: &str = "rate = 500\nburst = 50\nconcurrency = 8";

/// `in.csv` = `customers(n)` (with `changed` rows' first names changed) and `c.toml` whose
/// `[state]` is in the bucket, with `extra` keys.
fn s3_dir(n: u32, changed: &[u32], limits: &str, extra: &str) -> Dir {
    let dir = Dir::new();
    let mut csv = customers(n);
    for i in changed {
        csv = csv.replace(&format!(",First{i},"), &format!(",Changed{i},"));
    }
    dir.write("in.csv", csv);
    dir.write(
        "c.toml",
        format!(
            "{}\n[state]\npath = \"s3://{BUCKET}/crm/\"\n{extra}\n",
            config(limits, BY_ID)
        ),
    );
    dir
}

/// `apply` in `dir` against the emulator, with the state's S3 at `s3`.
async fn apply(
    dir: &Dir,
    emulator: &EmulatorHandle,
    s3: &str,
    ledger: &str,
) -> crate::support::Run {
    command(dir, emulator, &sync_args("apply", "c.toml", ledger, &[]))
        .env("AWS_ENDPOINT_URL_S3", s3)
        .output()
        .await
}

fn requests(emulator: &EmulatorHandle) -> u64 {
    emulator
        .stats()
        .operations
        .values()
        .map(|o| o.requests)
        .sum()
}

/// The state object's key (`crm/customer-profiles-<hash>.redb`).
fn state_key(moto: &MotoServer) -> String {
    moto.keys(BUCKET)
        .into_iter()
        .find(|k| k.ends_with(".redb"))
        .expect("a state object")
}

/// Starts `apply` of `dir` into `l.jsonl` in the background and waits until it holds its
/// lease: the running holder and its lease id.
async fn holding(dir: &Dir, emulator: &EmulatorHandle, moto: &MotoServer) -> (Child, String) {
    let holder = command(dir, emulator, &sync_args("apply", "c.toml", "l.jsonl", &[]))
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    let lease = loop {
        if let Some(key) = moto
            .keys(BUCKET)
            .into_iter()
            .find(|k| k.ends_with(".lease"))
        {
            break key;
        }
        assert!(Instant::now() < deadline, "the holder took no lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (body, _) = moto.get(BUCKET, &lease).expect("the lease");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    let id = body["lease_id"].as_str().expect("an id").to_owned();
    (holder, id)
}

/// `profilesync state unlock --config c.toml ID` in `dir`.
async fn unlock(dir: &Dir, moto: &MotoServer, id: &str) -> crate::support::Run {
    dir.command(&["state", "unlock", "--config", "c.toml", id])
        .aws("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .output()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn night_two_from_an_empty_directory_costs_what_changed() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    // 1,000 records: read without a state, they would cost 50 BatchGetProfile calls alone.
    let n = 1000;
    let emulator = seeded(n).await;
    let night1 = s3_dir(n, &[], LIMITS, "");
    apply(&night1, &emulator, &moto.endpoint, "l.jsonl")
        .await
        .assert_exit(0);
    assert_eq!(
        count(&night1.ledger("l.jsonl"), "updated", None),
        n as usize
    );
    assert!(!night1.path("state").exists(), "no local state is left");
    let key = state_key(&moto);
    assert!(
        moto.get(BUCKET, &format!("{key}.lease")).is_none(),
        "released"
    );

    // Night 2: another machine, an empty directory, 1% of the rows changed.
    let changed: Vec<u32> = (1..=10).map(|i| i * 97).collect();
    let night2 = s3_dir(n, &changed, LIMITS, "");
    emulator.reset_stats();
    let out = apply(&night2, &emulator, &moto.endpoint, "l.jsonl").await;
    out.assert_exit(0);
    let ledger = night2.ledger("l.jsonl");
    assert_eq!(count(&ledger, "updated", None), changed.len());
    assert_eq!(
        count(&ledger, "unchanged", Some("state")),
        n as usize - changed.len()
    );
    let calls = requests(&emulator);
    assert!(
        calls <= 2 * changed.len() as u64 + 20,
        "{calls} calls for {} changed",
        changed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lease_stops_a_second_run_before_it_sends_and_unlock_removes_it() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let n = 20;
    let emulator = seeded(n).await;
    let dir = s3_dir(n, &[], LIMITS, "");
    apply(&dir, &emulator, &moto.endpoint, "l1.jsonl")
        .await
        .assert_exit(0);
    // Another host's live lease.
    let lease = format!("{}.lease", state_key(&moto));
    let body = json!({"lease_id": "0123abcd0123abcd", "host": "runner-7", "pid": 4242,
        "started": "2026-12-07T01:00:00Z", "expires": "2026-12-07T01:05:00Z", "seconds": 300});
    moto.put(BUCKET, &lease, body.to_string().as_bytes());

    let changed = s3_dir(n, &[3], LIMITS, "");
    emulator.reset_stats();
    let out = apply(&changed, &emulator, &moto.endpoint, "l2.jsonl").await;
    out.assert_exit(2);
    let err = out.stderr();
    for says in [
        "runner-7",
        "4242",
        "0123abcd0123abcd",
        "since 2026-12-07T01:00:00Z",
    ] {
        assert!(err.contains(says), "{says}: {err}");
    }
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
    assert_eq!(emulator.stats().operation("BatchGetProfile").requests, 0);

    // unlock by its id.
    unlock(&changed, &moto, "ffffffffffffffff")
        .await
        .assert_exit(2);
    assert!(
        moto.get(BUCKET, &lease).is_some(),
        "another id removes nothing"
    );
    unlock(&changed, &moto, "0123abcd0123abcd")
        .await
        .assert_exit(0);
    assert!(moto.get(BUCKET, &lease).is_none());
    apply(&changed, &emulator, &moto.endpoint, "l3.jsonl")
        .await
        .assert_exit(0);
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_the_lease_blocks_until_it_expires_then_the_next_run_proceeds() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let n = 200;
    let emulator = slow_emulator(n, 100).await;
    let limits = "rate = 500\nburst = 50\nconcurrency = 4";
    let dir = s3_dir(n, &[], limits, "lease_seconds = 4\ncheckpoint_records = 1");
    let holder = command(
        &dir,
        &emulator,
        &sync_args("apply", "c.toml", "l1.jsonl", &[]),
    )
    .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
    .spawn();
    // Killed once its first checkpoint (after the writer's first batch) is in S3.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !moto.keys(BUCKET).iter().any(|k| k.ends_with(".redb")) {
        assert!(
            Instant::now() < deadline,
            "the holder uploaded no checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.signal("-KILL");
    let _ = holder.wait().await;
    let killed = Instant::now();
    assert!(moto.keys(BUCKET).iter().any(|k| k.ends_with(".lease")));

    let out = apply(&dir, &emulator, &moto.endpoint, "l2.jsonl").await;
    out.assert_exit(2);
    assert!(
        out.stderr().contains("leased by another run"),
        "{}",
        out.stderr()
    );
    // Once 4 s have passed by S3's clock, the lease is taken over, and what the checkpoint
    // holds is not read again.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(killed.elapsed())).await;
    emulator.reset_stats();
    let out = apply(&dir, &emulator, &moto.endpoint, "l3.jsonl").await;
    out.assert_exit(0);
    let by_state = count(&dir.ledger("l3.jsonl"), "unchanged", Some("state"));
    assert!(
        by_state >= 64,
        "{by_state} records known from the checkpoint"
    );
    // The records written after the checkpoint are read again and found equal.
    let writes = emulator.stats().operation("UpdateProfile").requests;
    assert!(writes <= n as u64 - by_state as u64, "{writes} writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holders_upload_is_refused_and_the_newer_state_survives() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let n = 40;
    let emulator = slow_emulator(n, 150).await;
    let limits = "rate = 500\nburst = 50\nconcurrency = 1";
    // A state exists: every upload below replaces it with If-Match.
    let newer = s3_dir(3, &[], limits, "");
    apply(&newer, &emulator, &moto.endpoint, "l0.jsonl")
        .await
        .assert_exit(0);
    let stale = s3_dir(n, &[], limits, "");
    let (holder, id) = holding(&stale, &emulator, &moto).await;
    // The holder stalls (a paused VM, a long GC), and someone who took it for dead removes
    // its lease; another run then stores a newer state.
    holder.signal("-STOP");
    unlock(&stale, &moto, &id).await.assert_exit(0);
    apply(&newer, &emulator, &moto.endpoint, "l.jsonl")
        .await
        .assert_exit(0);
    let key = state_key(&moto);
    let (_, etag) = moto.get(BUCKET, &key).expect("the newer state");
    // The stale holder wakes up and finishes: its upload is refused (412), it exits 3.
    holder.signal("-CONT");
    let out = holder.wait().await;
    out.assert_exit(3);
    assert!(
        out.stderr().contains("changed by another run"),
        "{}",
        out.stderr()
    );
    let (_, after) = moto.get(BUCKET, &key).expect("the state");
    assert_eq!(after, etag, "the newer state survives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lease_stops_sending_and_exits_3() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let n = 80;
    let emulator = slow_emulator(n, 150).await;
    let limits = "rate = 500\nburst = 50\nconcurrency = 1";
    let dir = s3_dir(n, &[], limits, "lease_seconds = 3");
    let (holder, id) = holding(&dir, &emulator, &moto).await;
    // Someone removes the lease: the next renewal (within a second) finds it gone.
    unlock(&dir, &moto, &id).await.assert_exit(0);
    let out = holder.wait().await;
    out.assert_exit(3);
    assert!(
        out.stderr().contains("lease was taken over or removed"),
        "{}",
        out.stderr()
    );
    let settled = dir.ledger("l.jsonl").len();
    assert!(
        settled < n as usize,
        "it stopped sending: {settled} settled"
    );
    assert_eq!(
        emulator.stats().operation("UpdateProfile").requests,
        settled as u64
    );
    assert!(
        !moto.keys(BUCKET).iter().any(|k| k.ends_with(".redb")),
        "a run without its lease uploads nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_ignores_conditional_writes_is_refused_before_anything_is_sent() {
    // Answers 200 to everything, as a store without conditional writes does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    let n = 5;
    let emulator = seeded(n).await;
    let dir = s3_dir(n, &[], LIMITS, "");
    let out = apply(&dir, &emulator, &endpoint, "l.jsonl").await;
    out.assert_exit(2);
    let err = out.stderr();
    assert!(err.contains("ignores conditional writes"), "{err}");
    assert!(err.contains(&endpoint), "{err}");
    assert_eq!(emulator.stats().operation("UpdateProfile").requests, 0);
}

/// `erase` with the state in S3, from a machine that has never run the sync: it takes the
/// lease, deletes the record, and the state it uploads has forgotten it, so the next night
/// (from yet another directory) reads that record again instead of calling it unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_with_the_state_in_s3_forgets_the_record_there() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let n = 20;
    let emulator = seeded(n).await;
    apply(
        &s3_dir(n, &[], LIMITS, ""),
        &emulator,
        &moto.endpoint,
        "l.jsonl",
    )
    .await
    .assert_exit(0);

    let eraser = s3_dir(n, &[], LIMITS, "");
    eraser.write("keys.txt", format!("{}\n", crate::support::pid(3)));
    let erase = eraser
        .command(&[
            "erase", "--config", "c.toml", "keys.txt", "--ledger", "e.jsonl",
        ])
        .profiles(&emulator)
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .output()
        .await;
    erase.assert_exit(0);
    assert_eq!(eraser.ledger("e.jsonl")[0]["outcome"], "deleted");
    assert_eq!(emulator.stats().operation("DeleteProfile").requests, 1);
    assert!(
        moto.get(BUCKET, &format!("{}.lease", state_key(&moto)))
            .is_none(),
        "released"
    );

    let night2 = s3_dir(n, &[], LIMITS, "");
    apply(&night2, &emulator, &moto.endpoint, "l.jsonl")
        .await
        .assert_exit(0);
    let ledger = night2.ledger("l.jsonl");
    assert_eq!(
        count(&ledger, "unchanged", Some("state")),
        n as usize - 1,
        "every record but the erased one is known"
    );
    let third = ledger.iter().find(|e| e["key"] == "C3").unwrap();
    assert_ne!(third["basis"], "state", "{third}");
}

/// A bucket that does not exist is a configuration error (exit 2) that says so, before any
/// record is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_that_does_not_exist_is_a_config_error_naming_it() {
    let Some(moto) = MotoServer::start(BUCKET) else {
        return;
    };
    let emulator = seeded(5).await;
    let dir = s3_dir(5, &[], LIMITS, "");
    dir.write(
        "c.toml",
        std::fs::read_to_string(dir.path("c.toml"))
            .unwrap()
            .replace(BUCKET, "no-such-bucket"),
    );
    let out = apply(&dir, &emulator, &moto.endpoint, "l.jsonl").await;
    out.assert_exit(2);
    assert!(
        out.stderr().contains("the bucket no-such-bucket") && out.stderr().contains("create it"),
        "{}",
        out.stderr()
    );
    assert_eq!(emulator.stats().operation("BatchGetProfile").requests, 0);
}
