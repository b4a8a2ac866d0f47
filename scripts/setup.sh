#!/usr/bin/env bash
# Installs what building and testing need, skipping whatever is already there at the right
# version: the wasm target, wasm-bindgen-cli (at exactly Cargo.lock's wasm-bindgen) and the npm
# packages (among them wasm-opt, from binaryen, and esbuild, from wrangler). The first run
# compiles one cargo tool, as a debug build: it only rewrites one wasm file (0.5 s instead of
# 0.1 s), and a debug build compiles in half the CPU time of a release one. worker-build is not
# needed: scripts/build.sh runs the same steps itself.
#
# `setup.sh --no-wasm-bindgen` installs the rest; `setup.sh --wasm-bindgen` that CLI alone.
# scripts/test.sh runs them apart, to compile the CLI while the native checks run.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
part="${1:-all}"

# The CLI must match the wasm-bindgen crate the Worker links, or the bindings will not load.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' Cargo.lock)

has_version() { command -v "$1" >/dev/null 2>&1 && "$1" --version 2>/dev/null | grep -qF "$2"; }

if [ "$part" != --wasm-bindgen ]; then
  if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
  fi
  if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
fi
if [ "$part" != --no-wasm-bindgen ] && ! has_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  # Not --locked: a dependency of the CLI has been yanked and --locked refuses it.
  # Without debug info too: 65 s instead of 78 s on 2 cores.
  CARGO_PROFILE_DEV_DEBUG=0 cargo install --debug wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi
