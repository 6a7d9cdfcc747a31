#!/usr/bin/env bash
# Benchmark of `profilesync apply` for Amazon Connect users against the emulator (issue 7).
#
#   bench/connect.sh [USERS]     (default 200)
#
# The emulator keeps Connect's documented quotas, 2 requests/s with a burst of 5 for each
# operation; the client runs at the same 2/s, burst 5, per operation. Each case prints the
# calls per operation and the wall time against the quota-bound minimum for those calls:
# operations have buckets of their own and run side by side, so the minimum is the slowest
# operation's (calls - burst) / rate. Goal: wall <= 1.1 x that minimum.
#
# (a) matched by UserId, every user changes:       DescribeUser + UpdateUserIdentityInfo each
# (b) matched by Username, half the users change:  one ListUsers page, DescribeUser each, half written
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-200}
data=bench/data/connect
mkdir -p "$data"
cargo build --release --quiet --bin profilesync
bin=$PWD/target/release/profilesync

python3 - "$n" "$data" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
users = {f"u{i}": {"Username": f"agent{i}", "IdentityInfo": {
    "FirstName": f"First{i}", "LastName": "Old", "Email": f"agent{i}@example.com",
    "Mobile": "+12062340147"}} for i in range(1, n + 1)}
json.dump({"instances": {"bench-instance": {"users": users}}}, open(f"{out}/seed.json", "w"))
with open(f"{out}/all.csv", "w") as f:
    f.write("user_id,username,last\n")
    for i in range(1, n + 1):
        f.write(f"u{i},agent{i},New{i}\n")
with open(f"{out}/half.csv", "w") as f:
    f.write("user_id,username,last\n")
    for i in range(1, n + 1):
        f.write(f"u{i},agent{i},{'Half' if i % 2 else 'Old'}\n")
PY

config() { # matching
    cat <<TOML
[source]
key = "user_id"
[target]
kind = "connect-user"
instance_id = "bench-instance"
[match]
$1
[limits]
rate = 2
burst = 5
concurrency = 4
[fields]
LastName = "last"
TOML
}

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CONNECT

run() { # label matching input
    local label=$1
    config "$2" > "$data/config.toml"
    rm -rf "$data/ledger.jsonl" "$data/ledger.jsonl.run.json" "$data/state"
    start_emulator
    local out
    out=$( { /usr/bin/time -f "%e %U %S" "$bin" apply --config "$data/config.toml" "$data/$3" \
        --ledger "$data/ledger.jsonl" --state "$data/state" --quiet --no-progress || true; } 2>&1 | tail -1)
    read -r wall user sys <<< "$out"
    python3 - "$port" "$label" "$wall" "$user" "$sys" "$data/ledger.jsonl" <<'PY'
import collections, json, sys, urllib.request
port, label, wall, user, sys_ = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats"))["operations"]
statuses = collections.Counter(json.loads(l)["status"] for l in open(sys.argv[6]))
rate, burst = 2.0, 5
calls = {op: s.get("requests", 0) for op, s in stats.items() if s.get("requests", 0)}
throttled = sum(s.get("by_status", {}).get("429", 0) for s in stats.values())
minimum = max(max(0, c - burst) / rate for c in calls.values())
print(f"{label}")
print(f"  records: {dict(statuses)}")
print(f"  calls:   {', '.join(f'{op} {c}' for op, c in calls.items())}; throttled {throttled}")
print(f"  wall {wall:.2f} s, quota-bound minimum {minimum:.2f} s, ratio {wall / minimum:.3f} "
      f"(goal <= 1.1: {'met' if wall <= 1.1 * minimum else 'MISSED'}); client CPU {user + sys_:.2f} s")
PY
}

echo "== connect-user apply, $n users, $(nproc) cores, 2/s burst 5 per operation"
run "(a) by UserId, every user changes" 'id = "user_id"' all.csv
run "(b) by Username, half the users change" 'search_key = "Username"
search_column = "username"' half.csv
