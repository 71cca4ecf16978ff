#!/usr/bin/env bash
# Builds Quiver (release) and starts the server: gRPC on 127.0.0.1:50051, data in ./data,
# metrics on 127.0.0.1:9091. Extra arguments go to quiver-server (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p quiver-server -p quiver-client
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/quiver-server" "$@"
