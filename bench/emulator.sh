#!/usr/bin/env bash
# Emulator throughput on loopback: builds the release binary and runs bench/emulator.rs,
# which sends EMULATOR_BENCH_REQUESTS (default 20000) UpdateProfile requests at
# EMULATOR_BENCH_CONCURRENCY (default 32) to `profilesync emulator --no-quota` and prints
# requests/s. It stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench emulator "$@"
