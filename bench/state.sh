#!/usr/bin/env bash
# Size and speed of the local sync state (issue 8): bench/state.sh [N...] (default 100000 1000000)
#
# For each N: N records inserted in batches of 64 (one durable redb transaction each, as a
# run's writer commits them), then a night's changes (1%), lookups of found and missing ids,
# and a compaction. Prints the example's figures and the peak RSS (`/usr/bin/time -v`).
# Targets: <= 64 bytes per record on disk at 1M records; peak RSS flat from 100k to 1M.
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)
data=bench/data/state
cargo build --release --quiet --example state_bench
bin=$PWD/target/release/examples/state_bench

for n in "${sizes[@]}"; do
    rm -rf "$data/$n"
    mkdir -p "$data/$n"
    echo "== $n records"
    /usr/bin/time -v "$bin" "$n" "$data/$n" 2> "$data/$n.time"
    awk -F': ' '/Maximum resident set size/ {printf "peak_rss_kib=%s\n", $2}
                /Elapsed \(wall clock\)/ {printf "wall=%s\n", $2}' "$data/$n.time"
done
