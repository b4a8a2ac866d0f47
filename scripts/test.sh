#!/usr/bin/env bash
# Every test: the core natively (fmt, clippy, cargo test), the Worker built for wasm, then the
# end-to-end suite against the built Worker in Miniflare with loopback servers. Installs what is
# missing first (scripts/setup.sh). Exits non-zero on the first failure.
#
# Two lines of work run side by side: the native checks, and the wasm ones (wasm-bindgen-cli's
# first install, clippy for wasm32, the release build) in a target directory of their own, so
# that neither waits on the other's cargo lock. Each is mostly one busy core at a time (a
# crate's final codegen, LTO, linking, the tests' own run), so on 2 cores the two together took
# about as long as the longer one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh --no-wasm-bindgen

echo "== cargo fmt --check"
cargo fmt --check

mkdir -p target
wasm_log=target/test-wasm.log
(
  set -euo pipefail
  bash scripts/setup.sh --wasm-bindgen
  echo "== cargo clippy (wasm32)"
  CARGO_TARGET_DIR=target/wasm-build cargo clippy --lib --target wasm32-unknown-unknown --quiet -- -D warnings
  echo "== build the Worker"
  CARGO_TARGET_DIR=target/wasm-build bash scripts/build.sh
) >"$wasm_log" 2>&1 &
wasm=$!
# The wasm line's output once it ends, whichever way the native line ends.
trap 'kill $wasm 2>/dev/null || true' EXIT

echo "== cargo clippy (native)"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet

echo "== the wasm line: wasm-bindgen-cli, cargo clippy (wasm32), the Worker's build"
if ! wait $wasm; then
  cat "$wasm_log"
  echo "test.sh: the wasm line failed (above)" >&2
  exit 1
fi
trap - EXIT
cat "$wasm_log"

echo "== end-to-end tests (Miniflare)"
export WRANGLER_SEND_METRICS=false
# Two files at a time: every server listens on a port of its own (port 0) and every Worker is
# its own Miniflare, so files share nothing; most of a file's time is waiting on processes and
# timers, and two at a time took 165 s instead of 235 s for the 342 tests on 2 cores.
node --test --test-concurrency=2 tests/e2e/
