#!/usr/bin/env bash
# Benchmark of `profilesync check` on a generated 20-column CRM export, ledger included.
#
#   bench/check.sh [ROWS]      (default 1000000; also runs 100000 to show memory is flat)
#
# Prints, per mapping: wall time, records/s, peak RSS; and the bare csv-crate pass over the
# same file, with profilesync's time as a ratio to it. Targets (issue 2): plain mapping at
# least 300,000 records/s, with two e164 columns and one date column at least 100,000
# records/s, peak RSS under 64 MB and not growing from 100k to 1M records.
set -euo pipefail
cd "$(dirname "$0")/.."

rows=${1:-1000000}
data=bench/data
mkdir -p "$data"
cargo build --release --quiet --bin profilesync --example csv_baseline
bin=target/release/profilesync
baseline=target/release/examples/csv_baseline

measure() { # label rows file config
    local label=$1 n=$2 file=$3 config=$4 ledger
    ledger=$(mktemp -u "$data/ledger.XXXXXX.jsonl")
    local out
    out=$( { /usr/bin/time -f "%e %M" "$bin" check --config "$config" "$file" --ledger "$ledger" --quiet --no-progress; } 2>&1 | tail -1)
    local secs=${out% *} kb=${out#* }
    local lines
    lines=$(wc -l < "$ledger")
    rm -f "$ledger"
    [ "$lines" -eq "$n" ] || { echo "ledger has $lines lines, expected $n" >&2; exit 1; }
    awk -v l="$label" -v n="$n" -v s="$secs" -v kb="$kb" \
        'BEGIN { printf "%-28s %9d records %7.2f s %10.0f records/s  peak RSS %6.1f MB\n", l, n, s, n / s, kb / 1024 }'
    echo "$secs" > "$data/.last"
}

for n in 100000 "$rows"; do
    file="$data/crm-$n.csv"
    [ -s "$file" ] || python3 bench/gen_crm.py "$n" "$file"
done

echo "== check, $(nproc) cores"
for n in 100000 "$rows"; do
    file="$data/crm-$n.csv"
    measure "plain+trim/lowercase" "$n" "$file" bench/check-plain.toml
    plain=$(cat "$data/.last")
    measure "with 2x e164 + date" "$n" "$file" bench/check-phones.toml
done
echo "== bare csv crate pass ($rows records)"
start=$(date +%s.%N)
"$baseline" "$data/crm-$rows.csv"
end=$(date +%s.%N)
awk -v b="$(echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)")" -v p="$plain" \
    'BEGIN { printf "profilesync check (plain) takes %.1fx the time of a bare csv pass\n", p / b }'
