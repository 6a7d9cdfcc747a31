//! Feeds the diff report writer the settled records of a plan, as the pipeline's writer
//! stage does, and prints how long the report took and how large its files are.
//!
//!     cargo run --release --example report_page -- DIR RECORDS [--show-values]
//!
//! Every record would change three fields (FirstName, EmailAddress, Address.City); one in
//! 50 is invalid. Used by `bench/report.sh`.

use std::path::Path;
use std::time::{Duration, Instant};

use profilesync::ledger::{Entry, EntryError, Status, Tally};
use profilesync::report::{DiffReport, FieldCounts, RunEnd, RunInfo};
use profilesync::targets::{FieldChange, Mode};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(args.get(1).map_or("bench/data/report", String::as_str));
    let n: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let values = args.iter().any(|a| a == "--show-values");
    let started = Instant::now();
    let mut report = DiffReport::create(dir, "plan", values).expect("create the report");
    let (mut tally, mut fields) = (Tally::default(), FieldCounts::default());
    for i in 1..=n {
        let mut entry = Entry {
            record: i,
            line: i + 1,
            key: Some(format!("C{i:08}")),
            target_id: Some(format!("{i:032x}")),
            status: Status::WouldUpdate,
            changed: Vec::new(),
            attempts: Some(1),
            error: None,
            basis: None,
        };
        let mut changes = Vec::new();
        if i % 50 == 0 {
            entry.status = Status::Invalid;
            entry.error = Some(EntryError {
                code: "invalid_record".into(),
                message: format!(
                    "customers.csv:{}: EmailAddress (column email): not an e-mail address: no @",
                    i + 1
                ),
                problems: Vec::new(),
            });
        } else {
            changes = vec![
                FieldChange {
                    field: "FirstName".into(),
                    from: Some(format!("Old{i}")),
                    to: format!("First{i} <O'Brien & Co>"),
                },
                FieldChange {
                    field: "EmailAddress".into(),
                    from: Some(format!("old{i}@example.com")),
                    to: format!("c{i}@example.com"),
                },
                FieldChange {
                    field: "Address.City".into(),
                    from: Some(format!("Town{i}")),
                    to: format!("=City{i}"),
                },
            ];
            entry.changed = changes.iter().map(|c| c.field.clone()).collect();
        }
        report.write(&entry, &changes).expect("write a record");
        tally.add(entry.status);
        fields.add(&entry.changed);
    }
    let streamed = started.elapsed();
    let run = RunInfo {
        mode: Mode::Plan,
        command: format!("profilesync plan --config bench.toml customers.csv ({n} records)"),
        config: "bench.toml".into(),
        input: "customers.csv".into(),
        target: "customer-profiles, domain BenchDomain".into(),
        started: chrono::Local::now(),
    };
    let page = Instant::now();
    let end = RunEnd {
        duration: Duration::from_secs(1),
        exit_code: 1,
        stopped: None,
        tally: &tally,
        carried: 0,
        duplicates: 0,
        fields: &fields,
        ledger: Path::new("ledger.jsonl"),
    };
    let paths = report.finish(&run, &end).expect("write the page");
    let page = page.elapsed();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / 1e6;
    println!(
        "{n} records{}: CSV+JSONL streamed in {:.2} s, page written in {:.3} s; \
         page {:.2} MB, csv {:.2} MB, jsonl {:.2} MB",
        if values { " with values" } else { "" },
        streamed.as_secs_f64(),
        page.as_secs_f64(),
        size(&paths.html),
        size(&paths.csv),
        size(&paths.jsonl),
    );
    println!("{}", paths.html.display());
}
