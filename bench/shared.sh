#!/usr/bin/env bash
# Three `profilesync apply` processes at once against one emulator's Customer Profiles quota
# (UpdateProfile 100/s, bucket 100: the emulator's default), side by side (issue 17):
#
#   bench/shared.sh [RECORDS]     (default 1800, split evenly over the three processes)
#
# (a) [limits] shared in Redis, rate = 100 (the account-wide budget), burst = 10
# (b) rate = "auto" in each process (local AIMD, starting at 100/s)
# (c) a fixed rate = 100 in each process (300/s offered to a 100/s quota)
#
# Each line: the throttled share of all requests (429s over requests the emulator answered)
# and the wall time from the first start to the last end, against the quota-bound minimum
# (the emulator's bucket of 100 at once, the rest at 100/s). Needs redis-server on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-1800}
per=$((n / 3))
n=$((per * 3))
data=bench/data/shared
mkdir -p "$data"
cargo build --release --quiet --bin profilesync
bin=$PWD/target/release/profilesync
command -v redis-server >/dev/null || { echo "bench/shared.sh needs redis-server (apt-get install redis-server)" >&2; exit 1; }

python3 - "$per" "$data" <<'PY'
import json, sys
per, out = int(sys.argv[1]), sys.argv[2]
for p in range(3):
    with open(f"{out}/customers{p}.csv", "w") as f:
        f.write("crm_id,profile_id,first,last\n")
        for i in range(p * per + 1, (p + 1) * per + 1):
            f.write(f"C{i},{i:032x},First{i},Last{i}\n")
profiles = {f"{i:032x}": {"FirstName": f"Old{i}", "LastName": f"Last{i}"} for i in range(1, 3 * per + 1)}
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
concurrency = 16
max_attempts = 10
[fields]
FirstName = "first"
LastName = "last"
TOML
}

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES

redis_port=$((port + 1))
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no > "$data/redis.log" 2>&1 &
redis_pid=$!
trap 'stop_emulator; kill "$redis_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "Ready to accept" "$data/redis.log" && break; sleep 0.1; done

totals() { # requests and 429s over every operation
    python3 -c "import json,urllib.request; s=json.load(urllib.request.urlopen('http://127.0.0.1:$port/_emulator/stats'))['operations'].values(); print(sum(o['requests'] for o in s), sum(o.get('by_status',{}).get('429',0) for o in s))"
}

run() { # label limits
    local label=$1
    config "$2" > "$data/config.toml"
    start_emulator
    local start end pids=()
    start=$(date +%s.%N)
    for p in 0 1 2; do
        rm -rf "$data/ledger$p.jsonl" "$data/ledger$p.jsonl.run.json" "$data/state$p"
        "$bin" apply --config "$data/config.toml" "$data/customers$p.csv" --ledger "$data/ledger$p.jsonl" \
            --state "$data/state$p" --quiet --no-progress 2> "$data/stderr$p.log" &
        pids+=($!)
    done
    wait "${pids[@]}" || true
    end=$(date +%s.%N)
    local updated=0
    for p in 0 1 2; do updated=$((updated + $(grep -c '"status":"updated"' "$data/ledger$p.jsonl" || true))); done
    read -r requests throttled <<< "$(totals)"
    awk -v l="$label" -v n="$n" -v up="$updated" -v s="$start" -v e="$end" -v r="$requests" -v t="$throttled" '
        BEGIN {
            w = e - s; min = (n - 100) / 100
            printf "%-30s %5d/%d updated  wall %6.2f s (minimum %.1f s, x%.2f)  requests %5d  throttled %4d (%.2f%%)\n",
                   l, up, n, w, min, w / min, r, t, 100 * t / r
        }'
}

echo "== 3 processes x $per records, emulator UpdateProfile 100/s (bucket 100), $(nproc) cores"
run "(a) shared in Redis, 100/s" "rate = 100
burst = 10
shared = \"redis://127.0.0.1:$redis_port/0\""
run "(b) rate = \"auto\" in each" 'rate = "auto"
burst = 10'
run "(c) fixed 100/s in each" "rate = 100
burst = 10"
