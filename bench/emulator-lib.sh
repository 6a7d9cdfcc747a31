# Sourced by the benchmarks that run `profilesync emulator` as its own process (apply.sh,
# nightly.sh, connect.sh): a free-ish loopback port, the standard AWS environment pointing the
# client at it (as in production: nothing else configures it), and start/stop helpers.
#
#   . bench/emulator-lib.sh AWS_ENDPOINT_URL_CUSTOMER_PROFILES   # needs $bin and $data set
#   start_emulator [EMULATOR ARGS...]    # (re)starts it with $data/seed.json; log in $data
port=$((20000 + RANDOM % 20000))
export AWS_ACCESS_KEY_ID=AKIDBENCH AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export "$1=http://127.0.0.1:$port" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$port"   # STS: the account
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
emulator_pid=
stop_emulator() { [ -n "$emulator_pid" ] && kill "$emulator_pid" 2>/dev/null && wait "$emulator_pid" 2>/dev/null || true; emulator_pid=; }
trap stop_emulator EXIT
start_emulator() {
    stop_emulator
    "$bin" emulator --port "$port" --seed "$data/seed.json" "$@" > "$data/emulator.log" 2>&1 &
    emulator_pid=$!
    for _ in $(seq 300); do grep -q listening "$data/emulator.log" 2>/dev/null && return; sleep 0.1; done
    echo "the emulator did not start" >&2; exit 1
}
