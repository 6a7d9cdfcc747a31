#!/usr/bin/env bash
# Benchmark of the diff report (issue 9) for a plan of RECORDS records (default 100000):
# time and size of the report's files, and how long a headless Chromium takes to open the
# HTML page.
#
#   bench/report.sh [RECORDS]
#
# Targets: the page stays under 10 MB and opens in a browser in under 2 s.
#
# The records are fed to the report writer directly (bench/report_page.rs, through the
# same DiffReport calls the pipeline's writer stage makes): every record would change three
# fields, one in 50 is invalid. A real `plan` of 100,000 records against the emulator is not
# practical here: the emulator's SearchProfiles goes through every profile of the domain,
# about 25 requests/s with 100,000 profiles.
#
# "open" is measured twice: the wall time of `chromium --headless --dump-dom` (starting the
# browser included), and the page's own figure, milliseconds from navigation start to the
# end of its script (its `data-ready` attribute, read from the dumped DOM).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-100000}
data=bench/data/report
rm -rf "$data"
mkdir -p "$data"
cargo build --release --quiet --example report_page
example=$PWD/target/release/examples/report_page
chromium=/usr/bin/chromium

echo "== diff report of a plan of $n records (3 changed fields each), $(nproc) cores"
for values in "" "--show-values"; do
    out=$data/run${values:+-values}
    mkdir -p "$out"
    "$example" "$out" "$n" $values > "$out/figures.txt"
    head -1 "$out/figures.txt"
    html=$(sed -n 2p "$out/figures.txt")
    total=$(grep -o 'id="total-all" data-count="[0-9]*"' "$html" | grep -o '[0-9]*"$' | tr -d '"')
    listed=$(grep -o '<tr data-status="would_update">' "$html" | wc -l)
    echo "    the page's totals count $total records; its table lists $listed"
    if [ ! -x "$chromium" ]; then
        echo "    (no $chromium: the open time is not measured)"
        continue
    fi
    for attempt in 1 2 3; do
        profile=$(mktemp -d)
        start=$(date +%s.%N)
        timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
            --no-first-run --disable-background-networking --disable-component-update \
            --disable-sync --user-data-dir="$profile" --dump-dom "file://$PWD/$html" \
            > "$out/dom.html" 2> /dev/null
        wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
        rm -rf "$profile"
        ready=$(grep -o 'data-ready="[0-9]*"' "$out/dom.html" | grep -o '[0-9]\+')
        echo "    chromium open #$attempt: $wall s wall (browser start included); page ready after $ready ms"
    done
done
