//! The sync state's size and speed (issue 8): inserts N records in batches of 64, as a run's
//! writer would, each batch one durable transaction; then one night's changes (1% of the
//! records, batches of 64); then looks up keys, found and missing; then closes it, which
//! compacts when an eighth of the file is free pages. Prints one
//! `key=value` line per figure. bench/state.sh runs it for 100,000 and 1,000,000 records
//! under `/usr/bin/time -v` for the peak RSS.
//!
//! `state_bench N DIR` (DIR must be empty or absent).

use std::path::Path;
use std::time::Instant;

use profilesync::state::{PayloadValue, Stored, SyncState, TargetIdentity, payload_hash};

const BATCH: usize = 64;
const LOOKUPS: u64 = 200_000;

/// splitmix64: a fixed pseudo-random sequence, so every run inserts the same ids.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The i-th record's ProfileId: 32 random-looking hex digits, as CreateProfile assigns.
fn profile_id(i: u64) -> String {
    format!("{:016x}{:016x}", mix(2 * i), mix(2 * i + 1))
}

fn stored(i: u64, night: u32) -> Stored {
    let first = format!("First{i}");
    let email = format!("c{i}-{night}@example.com");
    Stored {
        hash: payload_hash(&[
            ("FirstName", PayloadValue::One(&first)),
            ("EmailAddress", PayloadValue::One(&email)),
        ]),
        last_modified: None,
        written_at: Some(1_800_000_000 + night),
    }
}

fn insert(state: &SyncState, ids: impl Iterator<Item = u64>, night: u32) -> Result<u64, String> {
    let mut batch: Vec<(String, Stored)> = Vec::with_capacity(BATCH);
    let mut written = 0;
    let mut flush = |batch: &mut Vec<(String, Stored)>| -> Result<(), String> {
        let items: Vec<(&str, Stored)> = batch.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        state.put_many(&items).map_err(|e| e.to_string())?;
        written += batch.len() as u64;
        batch.clear();
        Ok(())
    };
    for i in ids {
        batch.push((profile_id(i), stored(i, night)));
        if batch.len() == BATCH {
            flush(&mut batch)?;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch)?;
    }
    Ok(written)
}

fn file_size(path: &Path) -> Result<u64, String> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn print_usage(state: &SyncState, when: &str) -> Result<(), String> {
    let usage = state.disk_usage().map_err(|e| e.to_string())?;
    println!(
        "{when}: allocated_bytes={} stored_bytes={} free_bytes={}",
        usage.allocated_bytes,
        usage.stored_bytes,
        usage.file_bytes.saturating_sub(usage.allocated_bytes)
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: state_bench N DIR";
    let n: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or(usage.to_string())?;
    let dir = args.next().ok_or(usage.to_string())?;
    let dir = Path::new(&dir);
    let identity = TargetIdentity::customer_profiles(
        "123456789012",
        "us-east-1",
        "http://127.0.0.1:1",
        "BenchDomain",
    );
    println!("records={n}");

    let state = SyncState::open(dir, &identity).map_err(|e| e.to_string())?;
    let path = state.path().to_path_buf();
    let started = Instant::now();
    insert(&state, 0..n, 0)?;
    let secs = started.elapsed().as_secs_f64();
    println!("insert_seconds={secs:.2}");
    println!("insert_records_per_second={:.0}", n as f64 / secs);
    println!("commits={}", n.div_ceil(BATCH as u64));
    print_usage(&state, "after_insert")?;
    drop(state);
    let size = file_size(&path)?;
    println!("file_bytes={size}");
    println!("bytes_per_record={:.1}", size as f64 / n as f64);

    // One night: 1% of the records change.
    let state = SyncState::open(dir, &identity).map_err(|e| e.to_string())?;
    let changed = (n / 100).max(1);
    let started = Instant::now();
    insert(&state, (0..changed).map(|k| (k * 97) % n), 1)?;
    println!(
        "night_update_records={changed} night_update_seconds={:.2}",
        started.elapsed().as_secs_f64()
    );

    // Lookups: every other one a missing id.
    let started = Instant::now();
    let mut found = 0u64;
    for k in 0..LOOKUPS {
        let i = mix(k ^ 0x5555) % n;
        let id = if k % 2 == 0 {
            profile_id(i)
        } else {
            profile_id(n + i)
        };
        if state.get(&id).map_err(|e| e.to_string())?.is_some() {
            found += 1;
        }
    }
    let micros = started.elapsed().as_secs_f64() * 1e6 / LOOKUPS as f64;
    if found != LOOKUPS / 2 {
        return Err(format!("found {found} of {} stored ids", LOOKUPS / 2));
    }
    println!("lookup_microseconds_per_key={micros:.2}");
    if state.len().map_err(|e| e.to_string())? != n {
        return Err("the state lost records".to_string());
    }
    print_usage(&state, "after_night")?;
    drop(state);
    let size = file_size(&path)?;
    println!("file_bytes_after_night={size}");
    println!("bytes_per_record_after_night={:.1}", size as f64 / n as f64);

    let state = SyncState::open(dir, &identity).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let compacted = state.close().map_err(|e| e.to_string())?;
    let size = file_size(&path)?;
    println!(
        "close_compacted={compacted} close_seconds={:.2}",
        started.elapsed().as_secs_f64()
    );
    println!("file_bytes_compacted={size}");
    println!("bytes_per_record_compacted={:.1}", size as f64 / n as f64);
    Ok(())
}
