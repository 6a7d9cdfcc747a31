#!/usr/bin/env bash
# Benchmark of `profilesync apply` against the emulator on loopback (issue 4).
#
#   bench/apply.sh [RECORDS]     (default 6000)
#
# (a) emulator quota 200/s burst 10, rate = 200:  target wall <= 1.05 * N/Q + 2 s, throttled < 1%
# (b) same quota, rate = "auto" from 2000/s:      target wall <= 1.15 * N/Q + 5 s, throttled < 5%
# (c) no quota, concurrency 64:                   records/s and client CPU seconds per 1,000 records
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-6000}
quota=200
data=bench/data/apply
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
profiles = {f"{i:032x}": {"FirstName": f"Old{i}", "LastName": f"Last{i}"} for i in range(1, n + 1)}
json.dump({"domains": {"BenchDomain": {"profiles": profiles}}}, open(f"{out}/seed.json", "w"))
PY

config() { # limits
    cat <<TOML
[source]
key = "crm_id"
[target]
kind = "customer-profiles"
domain = "BenchDomain"
[match]
id = "profile_id"
[limits]
$1
max_attempts = 10
[fields]
FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
"Address.City" = "city"
TOML
}

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES

stat() { # field of UpdateProfile stats
    python3 -c "import json,sys,urllib.request; s=json.load(urllib.request.urlopen('http://127.0.0.1:$port/_emulator/stats')); o=s['operations'].get('UpdateProfile',{}); print(o.get('by_status',{}).get('$1',0) if '$1'.isdigit() else o.get('$1',0))"
}

run() { # label limits target-wall throttle-limit-percent
    local label=$1 limits=$2
    config "$limits" > "$data/config.toml"
    # Each case is a first night against a freshly seeded emulator: a sync state of its own.
    rm -rf "$data/ledger.jsonl" "$data/ledger.jsonl.run.json" "$data/state"
    local out
    out=$( { /usr/bin/time -f "%e %U %S" "$bin" apply --config "$data/config.toml" "$data/customers.csv" \
        --ledger "$data/ledger.jsonl" --state "$data/state" --quiet --no-progress || true; } 2>&1 | tail -1)
    read -r wall user sys <<< "$out"
    local updated requests throttled
    updated=$(grep -c '"status":"updated"' "$data/ledger.jsonl" || true)
    requests=$(stat requests)
    throttled=$(stat 429)
    awk -v l="$label" -v n="$n" -v w="$wall" -v u="$user" -v s="$sys" -v up="$updated" -v r="$requests" -v t="$throttled" -v target="${3:-0}" -v tmax="${4:-0}" '
        BEGIN {
            printf "%-34s %5d/%d updated  wall %6.2f s  %7.0f records/s  requests %d  throttled %d (%.2f%%)  CPU %.2f s/1000 records\n",
                   l, up, n, w, n / w, r, t, 100 * t / r, 1000 * (u + s) / n
            if (target > 0) printf "%-34s target wall <= %.1f s: %s; throttled < %s%%: %s\n", "", target,
                   (w <= target ? "met" : "MISSED"), tmax, (100 * t / r < tmax ? "met" : "MISSED")
        }'
}

nq=$(awk -v n="$n" -v q="$quota" 'BEGIN { print n / q }')
echo "== apply, $n records, $(nproc) cores; N/Q = $nq s"
start_emulator --no-quota --quota "UpdateProfile=$quota:10"
run "(a) quota $quota/s, rate = $quota" "rate = $quota
burst = 10
concurrency = 16" "$(awk -v x="$nq" 'BEGIN { print 1.05 * x + 2 }')" 1
start_emulator --no-quota --quota "UpdateProfile=$quota:10"
run "(b) quota $quota/s, rate = auto" 'rate = "auto"
start_rate = 2000
burst = 10
concurrency = 16' "$(awk -v x="$nq" 'BEGIN { print 1.15 * x + 5 }')" 5
start_emulator --no-quota
run "(c) no quota, concurrency 64" "rate = 100000
burst = 1000
concurrency = 64"
