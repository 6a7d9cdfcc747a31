//! Throughput of the emulator on loopback, so that it is never the bottleneck when the
//! client is measured.
//!
//! Starts the built `profilesync emulator --no-quota` (release profile under `cargo bench`)
//! with a one-profile seed, sends a fixed number of UpdateProfile requests from a fixed
//! number of concurrent keep-alive connections, checks every answer is a 200, prints
//! requests per second, and stops the emulator. Client and server share the machine, so
//! the figure is a lower bound for the server alone.
//!
//! Run with `cargo bench --bench emulator` (or `bash bench/emulator.sh`). Environment:
//! `EMULATOR_BENCH_REQUESTS` (default 20000), `EMULATOR_BENCH_CONCURRENCY` (default 32).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;

const PROFILE_ID: &str = "0123456789abcdef0123456789abcdef";
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDBENCH/20260101/us-east-1/profile/aws4_request, SignedHeaders=host, Signature=00";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the emulator binary and returns it with its endpoint URL.
fn start_emulator(seed: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_profilesync"))
        .args(["emulator", "--no-quota", "--seed"])
        .arg(seed)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the emulator prints its endpoint");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("a `listening on URL` line")
        .to_string();
    (child, url)
}

/// Sends `total` requests from `concurrency` workers; returns the number of 200s.
async fn drive(url: &str, total: u64, concurrency: u64) -> u64 {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency as usize)
        .build()
        .expect("client");
    let target = format!("{url}/domains/BenchDomain/profiles");
    let next = Arc::new(AtomicU64::new(0));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, target, next, ok) = (client.clone(), target.clone(), next.clone(), ok.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let n = next.load(Ordering::Relaxed);
                let body = json!({"ProfileId": PROFILE_ID, "FirstName": format!("N{n}")});
                let sent = client
                    .put(&target)
                    .header("Authorization", SIGV4)
                    .json(&body)
                    .send()
                    .await;
                if sent.is_ok_and(|r| r.status() == 200) {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
    ok.load(Ordering::Relaxed)
}

fn main() {
    let total = env_number("EMULATOR_BENCH_REQUESTS", 20_000);
    let concurrency = env_number("EMULATOR_BENCH_CONCURRENCY", 32).max(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    let seed = dir.path().join("seed.json");
    let seed_json =
        json!({"domains": {"BenchDomain": {"profiles": {PROFILE_ID: {"FirstName": "Start"}}}}});
    std::fs::write(&seed, seed_json.to_string()).expect("seed written");
    let (mut child, url) = start_emulator(&seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Warm up the connections, then measure.
    runtime.block_on(drive(&url, concurrency * 4, concurrency));
    let started = Instant::now();
    let ok = runtime.block_on(drive(&url, total, concurrency));
    let elapsed = started.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "emulator: {total} UpdateProfile requests, concurrency {concurrency}, {:.2} s, {rate:.0} requests/s, {ok} answered 200",
        elapsed.as_secs_f64()
    );
    assert_eq!(ok, total, "every request should be answered 200");
}
