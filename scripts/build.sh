#!/usr/bin/env bash
# Builds the Worker into build/: build/index.js (one ES module: src/platform/entry.js and
# wasm-bindgen's glue) and build/index_bg.wasm. Arguments go to `cargo build` (for example
# `--features baseline-verify`).
#
# Four steps, each a tool scripts/setup.sh installed: cargo (release wasm), wasm-bindgen (the
# JS bindings, and a reset function for after a panic), wasm-opt from npm's binaryen (-O, no
# function-name section: about a tenth of the gzip bundle, there only to name wasm frames in a
# panic's stack trace) and esbuild from npm (one minified module, as wrangler uploads it).
# worker-build did the same with a heavier per-request shim (src/platform/entry.js says why) and
# would download wasm-bindgen, wasm-opt and esbuild from hosts not every machine reaches.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
WASM_OPT_BIN="${WASM_OPT_BIN:-$PWD/node_modules/.bin/wasm-opt}"
ESBUILD_BIN="${ESBUILD_BIN:-$PWD/node_modules/.bin/esbuild}"

# `--lib`: the Worker only; the crate's native tool (tools/check-config.rs, for
# `npm run check-config`) is not built for wasm.
cargo build --release --target wasm32-unknown-unknown --lib "$@"

gen=build/.gen
rm -rf "$gen"
mkdir -p "$gen"
"$WASM_BINDGEN_BIN" "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/edge_auth_proxy.wasm" \
  --out-dir "$gen" --out-name index --target module --no-typescript \
  --experimental-reset-state-function
# The wasm features Rust's wasm32 target emits (and worker-build enabled): workerd runs them all.
# Binaryen inlines every function that has one caller, whatever its size, which made the
# request path one 66 KB function and the configuration parse another; V8 compiles a wasm
# function whole on its first call, so the first request compiled every route, provider and
# session branch it never took. Up to 200 bytes only: the first answer after a cold start
# came about 3 ms sooner (plain workerd), for the same CPU per request and 0.8 KB less gzip.
"$WASM_OPT_BIN" "$gen/index_bg.wasm" -o "$gen/index_bg.opt.wasm" -O --one-caller-inline-max-function-size=200 \
  --strip-debug --strip-producers \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int \
  --enable-bulk-memory --enable-multivalue --enable-reference-types --enable-exception-handling
# `import source` (the source-phase import wasm-bindgen writes) as the plain wasm import that
# wrangler and Miniflare read as a compiled module.
sed -i 's/^import source \(.*\)"\.\/index_bg\.wasm";$/import \1".\/index_bg.wasm";/' "$gen/index.js"
grep -q '^import wasmModule from "./index_bg.wasm";$' "$gen/index.js" \
  || { echo "build.sh: wasm-bindgen's wasm import is not the expected one" >&2; exit 1; }
cp src/platform/entry.js "$gen/entry.js"
"$ESBUILD_BIN" "$gen/entry.js" --bundle --format=esm --minify --log-level=warning \
  --external:./index_bg.wasm --external:'cloudflare:*' --outfile=build/index.js.new

mv "$gen/index_bg.opt.wasm" build/index_bg.wasm
mv build/index.js.new build/index.js
rm -rf "$gen" build/worker build/package.json
