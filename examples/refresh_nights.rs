//! Refresh writes per night (issue 15): `N` Customer Profiles records written on night 0 and
//! never changed after, synced every night for `DAYS` days against a domain that expires
//! profiles after 365 days, with profilesync's own refresh rule (`pipeline::refresh`). Prints
//! the refresh writes per night (min, median, max, the largest share), the writes per
//! record over the whole time, and whether any record went longer than the expiration.
//!
//!   cargo run --release --example refresh_nights -- [N] [DAYS]   (default 1000000 730)

use profilesync::config::RefreshSetting;
use profilesync::pipeline::refresh::Refresh;

const DAY: u64 = 86_400;
const START: u64 = 1_800_000_000;
const EXPIRATION: u32 = 365;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let days: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(730);
    let ids: Vec<String> = (0..n as u64)
        .map(|i| format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    // Night 0 writes every record (it differed, or it was found equal and refreshed at once).
    let mut written = vec![START as u32; n];
    let mut writes = vec![1u32; n];
    let mut per_night = Vec::with_capacity(days as usize);
    let mut longest_gap = 0u64;
    for day in 1..=days {
        let now = START + day * DAY;
        let rule = Refresh::new(RefreshSetting::Default, Some(EXPIRATION), now).expect("a rule");
        let mut refreshed = 0u64;
        for (i, id) in ids.iter().enumerate() {
            if rule.due(id, Some(written[i])) {
                longest_gap = longest_gap.max(now - u64::from(written[i]));
                written[i] = rule.now();
                writes[i] += 1;
                refreshed += 1;
            }
        }
        per_night.push(refreshed);
    }
    let mut sorted = per_night.clone();
    sorted.sort_unstable();
    let max = *sorted.last().unwrap_or(&0);
    println!(
        "refresh writes per night, {n} profiles unchanged for {days} daily nights (expiration {EXPIRATION} days):"
    );
    println!(
        "  min {}, median {}, max {} ({:.2}% of the profiles on the busiest night)",
        sorted.first().unwrap_or(&0),
        sorted[sorted.len() / 2],
        max,
        100.0 * max as f64 / n as f64
    );
    let nights_with_writes = per_night.iter().filter(|c| **c > 0).count();
    let mean = per_night.iter().sum::<u64>() as f64 / days as f64;
    println!(
        "  mean {mean:.0} a night ({:.2}%), {nights_with_writes} of {days} nights write",
        100.0 * mean / n as f64
    );
    if std::env::var_os("NIGHTS").is_some() {
        for (day, count) in per_night.iter().enumerate() {
            println!("  day {}: {count}", day + 1);
        }
    }
    let most = writes.iter().max().copied().unwrap_or(0);
    println!(
        "  writes per record over {days} days: at most {most}; longest time without a write: {} days (expiry at {EXPIRATION})",
        longest_gap / DAY
    );
}
