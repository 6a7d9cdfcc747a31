#!/usr/bin/env bash
# Benchmark of a one-time migration's memory: every row of the export is new to the target
# and is created (matched by e-mail, `when_missing = "create"`), the emulator's quotas off.
# The brief asks for constant memory; this prints the client's peak RSS at each size, and
# the growth per record between the first and the last, so that what grows with the input
# (the twins' book of keys and of created ids, `pipeline/twins.rs`) shows in one figure.
# The emulator's CPU is printed too: its SearchProfiles is indexed and its expiry sweep reads
# the profiles only when one may have expired, so a search costs its matches (before, both
# scanned the domain and N creates cost it O(N^2)). Compare the client CPU with the wall.
#
#   bench/migration.sh [SIZES...]      (default 5000 25000)
#   PROFILESYNC_BIN=path bench/migration.sh ...   (another build)
set -euo pipefail
cd "$(dirname "$0")/.."

sizes=("$@")
[ $# -eq 0 ] && sizes=(5000 25000)
data=bench/data/migration
rm -rf "$data"
mkdir -p "$data"
bin=${PROFILESYNC_BIN:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin profilesync
    bin=$PWD/target/release/profilesync
fi
echo '{"domains": {"BenchDomain": {"profiles": {}}}}' > "$data/seed.json"
cat > "$data/config.toml" <<'TOML'
[source]
key = "crm_id"
[target]
kind = "customer-profiles"
domain = "BenchDomain"
[match]
search_key = "_email"
search_column = "email"
when_missing = "create"
[limits]
rate = 100000
burst = 100
concurrency = 32
[fields]
FirstName = "first"
LastName = "last"
EmailAddress = { from = "email", transform = ["trim", "lowercase"] }
TOML

. bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES

echo "== migration (every row created), $(nproc) cores"
first_n= first_rss=
for n in "${sizes[@]}"; do
    python3 - "$n" "$data/export.csv" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("crm_id,first,last,email\n")
    for i in range(1, n + 1):
        f.write(f"C{i},First{i},Last{i},c{i}@example.com\n")
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
    created=$(grep -c '"status":"created"' "$data/ledger.jsonl" || true)
    printf '%9d rows: %d created, wall %.1f s, client CPU %.1f s, peak RSS %.1f MB, emulator CPU %s s, %s MB\n' \
        "$n" "$created" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)" "$emulator_cpu" "$emulator_rss"
    if [ -z "$first_n" ]; then
        first_n=$n first_rss=$rss
    elif [ "$n" -gt "$first_n" ]; then
        python3 -c "import sys; a,b,c,d=map(int,sys.argv[1:]); print(f'  growth: {(d-b)*1024/(c-a):.0f} bytes of peak RSS per added row ({a} -> {c} rows)')" \
            "$first_n" "$first_rss" "$n" "$rss"
    fi
done
