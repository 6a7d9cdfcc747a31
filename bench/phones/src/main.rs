//! Compares the two maintained Rust ports of libphonenumber on what the `e164` transform
//! does to each value: parse with a default region, check validity, format as E.164.
//!
//! The input is 100,000 US numbers in the formats CRM exports use, drawn from a fixed-seed
//! generator over every area code and exchange from 200 to 999 (so some are unassigned, and
//! the libraries' metadata versions show). Each library runs single-threaded over the whole
//! list, three times; the best time counts. Prints microseconds per number, how many each
//! accepted, and where they disagree.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

const COUNT: usize = 100_000;
const ROUNDS: usize = 3;

/// A small xorshift generator: the same numbers on every run, no dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn numbers() -> Vec<String> {
    let mut rng = Rng(20_261_130);
    (0..COUNT)
        .map(|_| {
            let a = 200 + rng.below(800);
            let e = 200 + rng.below(800);
            let n = rng.below(10_000);
            match rng.below(6) {
                0 => format!("({a}) {e}-{n:04}"),
                1 => format!("{a}-{e}-{n:04}"),
                2 => format!("+1 {a}.{e}.{n:04}"),
                3 => format!("{a}{e}{n:04}"),
                4 => format!("1-{a}-{e}-{n:04}"),
                _ => format!("{a}.{e}.{n:04}"),
            }
        })
        .collect()
}

fn with_rlib(text: &str) -> Option<String> {
    use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, Region};
    let region: Region = "US".parse().ok()?;
    let number = PhoneNumber::parse(text, Some(region)).ok()?;
    number
        .is_valid()
        .then(|| number.format_as(PhoneNumberFormat::E164).into_owned())
}

fn with_phonenumber(text: &str) -> Option<String> {
    let number = phonenumber::parse(Some(phonenumber::country::Id::US), text).ok()?;
    phonenumber::is_valid(&number)
        .then(|| number.format().mode(phonenumber::Mode::E164).to_string())
}

/// Best-of-`ROUNDS` microseconds per number, and the results of the last round.
fn measure(inputs: &[String], f: fn(&str) -> Option<String>) -> (f64, Vec<Option<String>>) {
    let mut best = f64::INFINITY;
    let mut results = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        results = inputs.iter().map(|t| f(black_box(t))).collect();
        let micros = started.elapsed().as_secs_f64() * 1e6 / inputs.len() as f64;
        best = best.min(micros);
    }
    (best, results)
}

fn main() {
    let inputs = numbers();
    let (rlib_us, rlib) = measure(&inputs, with_rlib);
    let (pn_us, pn) = measure(&inputs, with_phonenumber);
    let accepted = |r: &[Option<String>]| r.iter().filter(|v| v.is_some()).count();
    println!("{COUNT} US numbers, parse + is_valid + E.164, one thread, best of {ROUNDS}:");
    println!(
        "  rlibphonenumber  {rlib_us:>6.2} µs per number, {} valid",
        accepted(&rlib)
    );
    println!(
        "  phonenumber      {pn_us:>6.2} µs per number, {} valid",
        accepted(&pn)
    );
    let mut different_text = 0;
    let mut only_rlib: BTreeMap<String, usize> = BTreeMap::new();
    let mut only_pn: BTreeMap<String, usize> = BTreeMap::new();
    for (a, b) in rlib.iter().zip(&pn) {
        match (a, b) {
            (Some(a), Some(b)) if a != b => different_text += 1,
            (Some(a), None) => *only_rlib.entry(a[2..5].to_owned()).or_default() += 1,
            (None, Some(b)) => *only_pn.entry(b[2..5].to_owned()).or_default() += 1,
            _ => {}
        }
    }
    println!("  both valid, different E.164 text: {different_text}");
    let show = |m: &BTreeMap<String, usize>| {
        let total: usize = m.values().sum();
        let codes: Vec<&str> = m.keys().map(String::as_str).collect();
        format!("{total} (area codes: {})", codes.join(" "))
    };
    println!("  valid only for rlibphonenumber: {}", show(&only_rlib));
    println!("  valid only for phonenumber:     {}", show(&only_pn));
}
