#!/usr/bin/env bash
# Benchmark of the diff report (issue 9): `plan` of RECORDS records against the release
# emulator on loopback, every record changing three fields, then the HTML page's size and
# how long a headless Chromium takes to open it.
#
#   bench/report.sh [RECORDS]     (default 100000)
#
# Targets: the page stays under 10 MB and opens in a browser in under 2 s.
# "open" is measured twice: the wall time of `chromium --headless --dump-dom` (a browser
# start included), and the page's own figure, the milliseconds from navigation start to
# the end of its script (its `data-ready` attribute).
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-100000}
data=bench/data/report
rm -rf "$data"
mkdir -p "$data"
cargo build --release --quiet --bin profilesync
bin=$PWD/target/release/profilesync

python3 - "$n" "$data" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(f"{out}/customers.csv", "w") as f:
    f.write("crm_id,profile_id,first,last,email,city\n")
    for i in range(1, n + 1):
        f.write(f"C{i},{i:032x},First{i},Last{i},c{i}@example.com,City{i}\n")
profiles = {f"{i:032x}": {"FirstName": f"Old{i}", "LastName": f"Last{i}",
                          "EmailAddress": f"old{i}@example.com", "Address": {"City": f"Town{i}"}}
            for i in range(1, n + 1)}
json.dump({"domains": {"BenchDomain": {"profiles": profiles}}}, open(f"{out}/seed.json", "w"))
PY

cat > "$data/config.toml" <<'TOML'
[source]
key = "crm_id"
[target]
kind = "customer-profiles"
domain = "BenchDomain"
[match]
id = "profile_id"
[limits]
rate = 100000
burst = 1000
concurrency = 64
max_attempts = 10
[fields]
FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
"Address.City" = "city"
TOML

port=$((20000 + RANDOM % 20000))
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_CUSTOMER_PROFILES="http://127.0.0.1:$port"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
"$bin" emulator --port "$port" --seed "$data/seed.json" --no-quota > "$data/emulator.log" 2>&1 &
emulator_pid=$!
trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do grep -q listening "$data/emulator.log" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$data/emulator.log" || { echo "the emulator did not start" >&2; exit 1; }

chromium=/usr/bin/chromium
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }

echo "== diff report of a plan of $n records (each changes 3 fields), $(nproc) cores"
for values in "" "--show-values"; do
    label=${values:-"no values"}
    out=$data/run${values:+-values}
    mkdir -p "$out"
    start=$(date +%s.%N)
    "$bin" plan --config "$data/config.toml" "$data/customers.csv" --ledger "$out/ledger.jsonl" \
        --report "$out" --no-progress $values > "$out/summary.txt"
    wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    html=$(ls "$out"/*-plan-report.html)
    total=$(grep -o 'id="total-all" data-count="[0-9]*"' "$html" | grep -o '[0-9]*"$' | tr -d '"')
    listed=$(grep -o '<tr data-status="would_update">' "$html" | wc -l)
    printf '%-14s plan wall %6.2f s; page %s (%s records in its totals, %s listed); csv %s; jsonl %s\n' \
        "$label" "$wall" "$(mb "$(size "$html")")" "$total" "$listed" \
        "$(mb "$(size "$out"/*-plan-diff.csv)")" "$(mb "$(size "$out"/*-plan-diff.jsonl)")"
    if [ -x "$chromium" ]; then
        for attempt in 1 2 3; do
            profile=$(mktemp -d)
            start=$(date +%s.%N)
            timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
                --no-first-run --disable-background-networking --disable-component-update \
                --disable-sync --user-data-dir="$profile" --dump-dom "file://$PWD/$html" \
                > "$out/dom.html" 2> /dev/null
            open_wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
            rm -rf "$profile"
            ready=$(grep -o 'data-ready="[0-9]*"' "$out/dom.html" | grep -o '[0-9]\+')
            printf '%-14s   chromium open #%d: %s s wall (browser start included); page ready after %s ms\n' \
                "" "$attempt" "$open_wall" "$ready"
        done
    else
        echo "               (no $chromium: the open time is not measured)"
    fi
done
