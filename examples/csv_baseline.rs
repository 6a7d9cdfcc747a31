//! The floor for `check`: a bare pass of the `csv` crate over a file, reusing one
//! `ByteRecord`, counting records and bytes. bench/check.sh reports profilesync's time as a
//! ratio to this.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: csv_baseline FILE.csv")?;
    let started = Instant::now();
    let mut reader = csv::ReaderBuilder::new().from_path(&path)?;
    let mut record = csv::ByteRecord::new();
    let (mut records, mut bytes) = (0u64, 0u64);
    while reader.read_byte_record(&mut record)? {
        records += 1;
        bytes += record.as_slice().len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{records} records, {bytes} field bytes in {secs:.3} s ({:.0} records/s)",
        records as f64 / secs
    );
    Ok(())
}
