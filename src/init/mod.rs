//! `profilesync init TARGET INPUT [--output FILE]`: a first config from an export's header
//! and first records, so a new user does not type every mapping by hand.
//!
//! `sniff.rs` reads a sample (the first 1,000 records or 4 MiB): encoding (a UTF-8 BOM is
//! fine, UTF-16 and Latin-1 are refused with a way out), delimiter and header; for JSON Lines,
//! the dotted paths of the objects' values stand for the header. `suggest.rs`
//! matches each column to a target field by its normalised name, a per-target synonym table
//! or a near name, lets the sampled values confirm or veto the match (share of valid e-mails
//! and phones, the one date pattern all values fit), picks the transforms, the `[source] key`
//! and `[match]`, and writes the config, each line saying why. Both are pure; this file does
//! the I/O and checks that the config compiles and binds to the header before writing it.
//! No value of the file is ever written into the config.

mod sniff;
mod suggest;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use crate::config::compile::compile;
use crate::config::skeleton;
use crate::run::{EXIT_OK, EXIT_USAGE};
use crate::schema::TargetKind;

pub use sniff::{Sample, SniffError, sniff, sniff_jsonl};
pub use suggest::{Suggestion, normalise, render, suggest};

/// The records sampled.
pub const SAMPLE_ROWS: usize = 1_000;
/// The bytes sampled at most.
pub const SAMPLE_BYTES: u64 = 4 << 20;

/// Runs `init`: prints the config (or writes it to `output`, never over an existing file).
pub fn run(target: &str, input: &Path, output: Option<&Path>) -> i32 {
    match init(target, input, output) {
        Ok(()) => EXIT_OK,
        Err(message) => {
            eprintln!("profilesync: init: {message}");
            EXIT_USAGE
        }
    }
}

fn init(target: &str, input: &Path, output: Option<&Path>) -> Result<(), String> {
    let kind = TargetKind::from_name(target).ok_or_else(|| {
        let names: Vec<_> = TargetKind::ALL.iter().map(|k| k.name()).collect();
        format!(
            "unknown target `{target}`; expected one of {}",
            names.join(", ")
        )
    })?;
    let name = input.display().to_string();
    let lower = name.to_lowercase();
    let jsonl = [".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz"]
        .iter()
        .any(|end| lower.ends_with(end));
    let (bytes, truncated) = read_sample(input).map_err(|e| format!("cannot read {name}: {e}"))?;
    let sample = if jsonl {
        sniff_jsonl(&bytes, truncated, SAMPLE_ROWS)
    } else {
        sniff(&bytes, truncated, SAMPLE_ROWS)
    }
    .map_err(|e| format!("{name}: {e}"))?;
    let suggestion = suggest(kind, &sample);
    let text = render(
        kind,
        &name,
        &sample,
        &suggestion,
        skeleton::target_lines(kind),
    );
    verify(&text)?;
    match output {
        None => io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
        Some(path) => {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            file.write_all(text.as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            eprintln!(
                "wrote {}: review it, set [target], then: profilesync check --config {} {name}",
                path.display(),
                path.display()
            );
            Ok(())
        }
    }
}

/// The first [`SAMPLE_BYTES`] of the input (decompressed when it ends in `.gz`), and whether
/// there was more.
fn read_sample(path: &Path) -> io::Result<(Vec<u8>, bool)> {
    let file = File::open(path)?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut bytes = Vec::new();
    (&mut reader)
        .take(SAMPLE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    let truncated = bytes.len() as u64 > SAMPLE_BYTES;
    bytes.truncate(SAMPLE_BYTES as usize);
    Ok((bytes, truncated))
}

/// The written config must compile (its columns all come from the header): a suggestion
/// that would not is a bug, said as such rather than written.
fn verify(text: &str) -> Result<(), String> {
    compile(Path::new("<init>"), text).map(|_| ()).map_err(|e| {
        format!("the suggested config does not compile (a bug; please report it):\n{e}")
    })
}
