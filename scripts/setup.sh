#!/usr/bin/env bash
# Installs what the build needs when it is missing: libclang (bindgen, for RocksDB), and the
# model files (scripts/models.sh).
# Idempotent; safe to run every time.
set -euo pipefail

need_libclang() {
  # bindgen needs libclang plus clang's own headers (stdbool.h), which libclang-dev brings.
  ! dpkg -s libclang-dev >/dev/null 2>&1
}

if need_libclang; then
  echo "setup: installing libclang-dev (needed to build RocksDB's bindings)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

# The built-in models (embedding and generation): fetched once, checked by sha256 every time.
"$(dirname "$0")/models.sh"
