#!/usr/bin/env bash
# Builds Quiver (release, the one profile used for running, testing and benchmarking) and runs
# every test: unit, property and end-to-end tests against real server processes on loopback.
# QUIVER_CRASH_ROUNDS raises the number of SIGKILL rounds of the crash test (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --workspace --all-targets
cargo test --release --workspace
