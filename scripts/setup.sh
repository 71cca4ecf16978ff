#!/usr/bin/env bash
# Installs what the build and tests need when it is missing: libclang (bindgen, for RocksDB), a
# font for quiver-bench's plots (fontconfig and DejaVu), and the model files (scripts/models.sh).
# Idempotent; safe to run every time.
set -euo pipefail

need_libclang() {
  # bindgen needs libclang plus clang's own headers (stdbool.h), which libclang-dev brings.
  ! dpkg -s libclang-dev >/dev/null 2>&1
}

# quiver-bench draws its plots with the font fontconfig names for sans-serif (`fc-match`).
need_font() {
  ! command -v fc-match >/dev/null 2>&1 || [ -z "$(fc-match -f '%{file}' sans-serif 2>/dev/null)" ]
}

missing=()
if need_libclang; then missing+=(libclang-dev); fi
if need_font; then missing+=(fontconfig fonts-dejavu-core); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]} (RocksDB's bindings need libclang; quiver-bench's plots a font)" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

# The built-in models (embedding and generation): fetched once, checked by sha256 every time.
"$(dirname "$0")/models.sh"
