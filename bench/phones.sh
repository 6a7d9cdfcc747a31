#!/usr/bin/env bash
# Measures the two phone-number libraries the `e164` transform could use (see README,
# "Performance"). Builds a separate crate, so the main build never compiles the other one.
set -euo pipefail
cd "$(dirname "$0")/phones"
cargo run --quiet --release
