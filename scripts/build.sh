#!/usr/bin/env bash
# Builds the Worker (release wasm + JS glue) into build/. worker-build would download
# wasm-bindgen, wasm-opt and esbuild from hosts not every machine reaches: point it at the ones
# scripts/setup.sh installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
exec worker-build --release "$@"
