#!/usr/bin/env bash
# Benchmark of memory against the input's size: a first night of a sync matched by id (every
# seeded profile differs from the export and is updated, read 20 ids a call ahead of the
# writes), the emulator's quotas off. Prints the client's peak RSS at each size and the growth
# per added row between the first and the last. Goal (issue 18): flat, at most 16 bytes of
# peak RSS per added row from 100,000 to 1,000,000 rows (what a run remembers of every row,
# the twins' book of keys, lives in a scratch file; see `pipeline/twins.rs`). For creates
# matched by search, see bench/migration.sh.
#
#   bench/memory.sh [SIZES...]      (default 100000 1000000; the second takes some 8 minutes)
#   PROFILESYNC_BIN=path bench/memory.sh ...   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ $# -eq 0 ] && sizes=(100000 1000000)
data=bench/data/memory
rm -rf "$data"
mkdir -p "$data"
bin=${PROFILESYNC_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin profilesync
    bin=$PWD/target/release/profilesync
fi
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
burst = 100
concurrency = 32
[fields]
FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
"Address.City" = "city"
TOML

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES

echo "== memory of a first night (every profile updated, matched by id), $(nproc) cores"
first_n= first_rss=
for n in "${sizes[@]}"; do
    python3 - "$n" "$data" <<'PY'
import json, sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(f"{out}/export.csv", "w") as f:
    f.write("crm_id,profile_id,first,last,email,city\n")
    for i in range(1, n + 1):
        f.write(f"C{i},{i:032x},First{i},Last{i},c{i}@example.com,City{i}\n")
profiles = {f"{i:032x}": {"FirstName": f"Old{i}", "LastName": f"Last{i}"} for i in range(1, n + 1)}
json.dump({"domains": {"BenchDomain": {"profiles": profiles}}}, open(f"{out}/seed.json", "w"))
PY
    start_emulator --no-quota
    rm -rf "$data/state" "$data/ledger.jsonl" "$data/ledger.jsonl.run.json"
    out=$( { /usr/bin/time -f "%e %U %S %M" "$bin" apply --config "$data/config.toml" "$data/export.csv" \
        --ledger "$data/ledger.jsonl" --state "$data/state" --quiet --no-progress || true; } 2>&1 | tail -1)
    read -r wall user sys rss <<< "$out"
    updated=$(grep -c '"status":"updated"' "$data/ledger.jsonl" || true)
    printf '%9d rows: %d updated, wall %.1f s, client CPU %.1f s, peak RSS %.1f MB\n' \
        "$n" "$updated" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
    if [ -z "$first_n" ]; then
        first_n=$n first_rss=$rss
    elif [ "$n" -gt "$first_n" ]; then
        python3 -c "import sys; a,b,c,d=map(int,sys.argv[1:]); g=(d-b)*1024/(c-a); print(f'  growth: {g:.1f} bytes of peak RSS per added row ({a} -> {c} rows); goal <= 16: {\"met\" if g <= 16 else \"NOT met\"}')" \
            "$first_n" "$first_rss" "$n" "$rss"
    fi
done
