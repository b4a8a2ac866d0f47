// The Worker's entry module, bundled by scripts/build.sh in front of wasm-bindgen's glue: the
// Rust exports as workerd wants them, a plain `export default { fetch, scheduled }` and the
// Durable Object class, and a fresh wasm instance after a panic.
//
// Why not worker-build's shim: it answers every request through a `WorkerEntrypoint` subclass
// wrapped in two `Proxy`s (one per request, one per method call) and an extra `async` frame;
// measured with bench/profile.mjs in plain workerd, about 18 µs of CPU per request (235 -> 217). What it buys is kept here
// more cheaply: a panic aborts the wasm (`panic = "abort"`), which may leave a `RefCell`
// borrowed or a cache half-written, so the next request gets a new instance instead.
import * as wasm from './index.js';

// Set when the wasm trapped (a panic ends in `unreachable`), whichever way the trap reaches
// JavaScript: thrown from the call, as a rejected promise, or from a microtask that polled a
// Rust future (an uncaught error or an unhandled rejection of the isolate).
let trapped = false;
const isTrap = (e) => e instanceof WebAssembly.RuntimeError;
const noteTrap = (e) => {
  if (isTrap(e)) trapped = true;
  throw e;
};
addEventListener('error', (event) => {
  if (isTrap(event.error)) trapped = true;
});
addEventListener('unhandledrejection', (event) => {
  if (isTrap(event.reason)) trapped = true;
});

// Bumped by every reset: a Durable Object made before it makes its wasm half again.
let generation = 0;
function fresh() {
  if (!trapped) return;
  trapped = false;
  generation++;
  console.error('edge-auth-proxy: the wasm instance trapped; starting a fresh one');
  wasm.__wbg_reset_state();
}

function call(run) {
  fresh();
  let result;
  try {
    result = run();
  } catch (e) {
    noteTrap(e);
  }
  return result.catch(noteTrap);
}

export default {
  fetch(request, env, ctx) {
    return call(() => wasm.fetch(request, env, ctx));
  },
  scheduled(event, env, ctx) {
    return call(() => wasm.scheduled(event, env, ctx));
  },
};

/** The token coordinator's Durable Object (`TOKEN_COORDINATOR`): the Rust object behind it is
 * made on first use, and again after a reset. */
export class TokenCoordinator {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = undefined;
    this.generation = -1;
  }

  fetch(request) {
    return call(() => {
      if (this.generation !== generation) {
        this.inner = new wasm.TokenCoordinator(this.state, this.env);
        this.generation = generation;
      }
      return this.inner.fetch(request);
    });
  }
}
