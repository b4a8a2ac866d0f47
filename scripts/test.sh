#!/usr/bin/env bash
# Every test: the core natively (fmt, clippy, cargo test), the Worker built for wasm, then the
# end-to-end suite against the built Worker in Miniflare with loopback servers. Installs what is
# missing first (scripts/setup.sh). Exits non-zero on the first failure.
#
# Two lines of work run side by side: the native tests, and the Worker's build
# (wasm-bindgen-cli's first install, the release wasm) in a target directory of its own, so that
# neither waits on the other's cargo lock. Much of each is one busy core (a crate's final
# codegen, LTO, linking, the tests' own run), which the other line fills.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup.sh --no-wasm-bindgen

echo "== cargo fmt --check"
cargo fmt --check

# A first build (no target/ yet) without incremental compilation: nothing to reuse, and writing
# its caches cost time; later runs keep cargo's default.
[ -d target ] || export CARGO_INCREMENTAL=0

# Clippy's lints while compiling, not in a pass of their own. `cargo clippy` is `cargo check`
# with clippy-driver as the workspace's compiler and its arguments in CLIPPY_ARGS; the same
# driver in a real build lints and then compiles, so every dependency is compiled once instead
# of checked once and compiled again (about 80 s less of a first run on 2 cores: the native
# and wasm32 clippy passes took 36 s and 48 s). The lints are `cargo clippy -- -D warnings`'s:
# `cargo test` builds every target `--all-targets` lints, the release build is the wasm32 lib.
# Exported for the whole run: `npm run check-config` in the end-to-end tests finds the checker
# built by `cargo test` with the same compiler, instead of building it again.
RUSTC_WORKSPACE_WRAPPER="$(command -v clippy-driver)" || {
  echo "test.sh: clippy-driver not found: rustup component add clippy" >&2
  exit 1
}
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

mkdir -p target
wasm_log=target/test-wasm.log
(
  set -euo pipefail
  # Compiling the release wasm needs no wasm-bindgen: it runs beside the CLI's first install,
  # and build.sh then finds it done.
  CARGO_TARGET_DIR=target/wasm-build cargo build --release --target wasm32-unknown-unknown --lib --quiet &
  compile=$!
  # Installed as it is published: the lints are for this crate, not for the tool.
  env -u RUSTC_WORKSPACE_WRAPPER -u CLIPPY_ARGS bash scripts/setup.sh --wasm-bindgen
  wait $compile
  echo "== build the Worker, with clippy's lints (wasm32)"
  CARGO_TARGET_DIR=target/wasm-build bash scripts/build.sh
) >"$wasm_log" 2>&1 &
wasm=$!
# The wasm line's output once it ends, whichever way the native line ends.
trap 'kill $wasm 2>/dev/null || true' EXIT

echo "== cargo test, with clippy's lints (native)"
cargo test --quiet

echo "== the other line: wasm-bindgen-cli, the Worker's build"
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
