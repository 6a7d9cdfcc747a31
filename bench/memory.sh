#!/usr/bin/env bash
# Benchmark of memory against the input's size, the emulator's quotas off. Two shapes:
#   updates  a first night of a sync matched by id: every seeded profile differs from the
#            export and is updated, read 20 ids a call ahead of the writes (default sizes
#            100000 1000000; the second takes some 5-8 minutes);
#   creates  a one-time migration: the domain is empty and every row is created, matched by
#            e-mail with `when_missing = "create"` (default sizes 5000 25000).
# Prints, for each size, the client's wall, CPU and peak RSS, the emulator's CPU and peak RSS,
# and the growth of the client's peak RSS per added row between the first size and the last.
# Goal (issue 18): flat, at most 16 bytes per added row from 100,000 to 1,000,000 rows: what a
# run remembers of every row (the twins' book of keys and created ids, `pipeline/twins.rs`)
# lives in a scratch file.
#
#   bench/memory.sh [updates|creates] [SIZES...]
#   PROFILESYNC_BIN=path bench/memory.sh ...   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."

shape=updates
case "${1:-}" in updates | creates) shape=$1; shift ;; esac
sizes=("$@")
if [ $# -eq 0 ]; then
    if [ "$shape" = updates ]; then sizes=(100000 1000000); else sizes=(5000 25000); fi
fi
data=bench/data/memory
rm -rf "$data"
mkdir -p "$data"
bin=${PROFILESYNC_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin profilesync
    bin=$PWD/target/release/profilesync
fi
if [ "$shape" = updates ]; then
    match='id = "profile_id"'
    status=updated
else
    match=$'search_key = "_email"\nsearch_column = "email"\nwhen_missing = "create"'
    status=created
fi
cat > "$data/config.toml" <<TOML
[source]
key = "crm_id"
[target]
kind = "customer-profiles"
domain = "BenchDomain"
[match]
$match
[limits]
rate = 100000
burst = 100
concurrency = 32
[fields]
FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
"Address.City" = "city"
TOML

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES

echo "== memory: $shape (every row $status), $(nproc) cores"
first_n= first_rss=
for n in "${sizes[@]}"; do
    python3 - "$n" "$data" "$shape" <<'PY'
import json, sys
n, out, shape = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(f"{out}/export.csv", "w") as f:
    f.write("crm_id,profile_id,first,last,email,city\n")
    for i in range(1, n + 1):
        f.write(f"C{i},{i:032x},First{i},Last{i},c{i}@example.com,City{i}\n")
seeded = range(1, n + 1) if shape == "updates" else []
profiles = {f"{i:032x}": {"FirstName": f"Old{i}", "LastName": f"Last{i}"} for i in seeded}
json.dump({"domains": {"BenchDomain": {"profiles": profiles}}}, open(f"{out}/seed.json", "w"))
PY
    start_emulator --no-quota
    rm -rf "$data/state" "$data/ledger.jsonl" "$data/ledger.jsonl.run.json"
    out=$( { /usr/bin/time -f "%e %U %S %M" "$bin" apply --config "$data/config.toml" "$data/export.csv" \
        --ledger "$data/ledger.jsonl" --state "$data/state" --quiet --no-progress || true; } 2>&1 | tail -1)
    read -r wall user sys rss <<< "$out"
    # utime + stime of the emulator process, in clock ticks (fields 14 and 15 of its stat),
    # and its peak RSS.
    emulator_cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$emulator_pid/stat")
    emulator_rss=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$emulator_pid/status")
    done_rows=$(grep -c "\"status\":\"$status\"" "$data/ledger.jsonl" || true)
    printf '%9d rows: %d %s, wall %.1f s, client CPU %.1f s, peak RSS %.1f MB, emulator CPU %s s, %s MB\n' \
        "$n" "$done_rows" "$status" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)" \
        "$emulator_cpu" "$emulator_rss"
    if [ -z "$first_n" ]; then
        first_n=$n first_rss=$rss
    elif [ "$n" -gt "$first_n" ]; then
        python3 -c "import sys; a,b,c,d=map(int,sys.argv[1:]); g=(d-b)*1024/(c-a); print(f'  growth: {g:.1f} bytes of peak RSS per added row ({a} -> {c} rows); goal <= 16: {\"met\" if g <= 16 else \"NOT met\"}')" \
            "$first_n" "$first_rss" "$n" "$rss"
    fi
done
