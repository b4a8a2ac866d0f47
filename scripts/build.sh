#!/usr/bin/env bash
# Builds the Worker (release wasm + JS glue) into build/. worker-build would download
# wasm-bindgen, wasm-opt and esbuild from hosts not every machine reaches: point it at the ones
# scripts/setup.sh installed.
#
# wasm-opt runs here rather than in worker-build (Cargo.toml turns it off there), because
# worker-build always passes `--debuginfo`, which keeps the function-name section: about a
# tenth of the gzip bundle, there only to name wasm frames in a panic's stack trace. The same
# optimisation (-O) and the same wasm features worker-build enables, so workerd runs the same
# code; only the names are gone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"
worker-build --release "$@"
"$WASM_OPT_BIN" build/index_bg.wasm -o build/index_bg.wasm.opt -O --strip-debug --strip-producers \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
mv build/index_bg.wasm.opt build/index_bg.wasm
