#!/usr/bin/env bash
# Every test: the core natively (fmt, clippy, cargo test), the Worker built for wasm, then the
# end-to-end suite against the built Worker in Miniflare with loopback servers.
# Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy (native and wasm32)"
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --lib --target wasm32-unknown-unknown --quiet -- -D warnings
echo "== cargo test"
cargo test --quiet
echo "== build the Worker"
bash scripts/build.sh
echo "== end-to-end tests (Miniflare)"
export WRANGLER_SEND_METRICS=false
# Two files at a time: every server listens on a port of its own (port 0) and every Worker is
# its own Miniflare, so files share nothing; most of a file's time is waiting on processes and
# timers, and two at a time took 165 s instead of 235 s for the 342 tests on 2 cores.
node --test --test-concurrency=2 tests/e2e/
