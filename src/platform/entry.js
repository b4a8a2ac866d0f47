// The Worker's entry module, bundled by scripts/build.sh in front of wasm-bindgen's glue: the
// Rust exports as workerd wants them, a plain `export default { fetch, scheduled }` and the
// Durable Object class, and recovery from a wasm trap.
//
// Why not worker-build's shim: it answers every request through a `WorkerEntrypoint` subclass
// wrapped in two `Proxy`s (one per request, one per method call) and an extra `async` frame;
// measured with bench/profile.mjs in plain workerd, about 18 µs of CPU per request (235 -> 217). What it buys is kept here
// more cheaply: a panic aborts the wasm (`panic = "abort"`), which may leave a `RefCell`
// borrowed or a cache half-written, so later calls get a new instance instead.
//
// A trap fails only the call that trapped: every call the isolate serves (a request, a
// scheduled run, a coordinator ask) is counted while it runs on the instance. When one traps,
//  - its caller is answered at once: the trap unwinds out of the poll of that call's Rust
//    future, out of the executor's microtask (which `queueMicrotask` below catches it from),
//    and `failTrapped` rejects that call's promise (src/platform/trap.rs says how it knows
//    which), so a request gets a 500 problem+json;
//  - the calls already in flight go on, on the same instance, and complete: replacing it under
//    them would strand them (their callbacks would reach the new instance, which refuses them,
//    and their callers would wait until workerd gives up);
//  - calls that arrive meanwhile wait, and start on a fresh instance as soon as none is in
//    flight. So nothing new runs on the trapped instance's suspect state, and nothing is lost.
//    Past ORIGIN_TIMEOUT_MS + 15 s (longer than any call takes: the origin's deadline after
//    the token, key-set and introspection ones) the calls still running are taken as stuck
//    and the instance is replaced anyway.
// Why wait rather than serve the newcomers from a second instance while the first drains:
// wasm-bindgen's glue holds its instance in module state (`wasm`, the memory views, the
// instance id its closures check), so two live instances take two copies of the glue, each
// instantiating its own wasm when the module loads. Measured (esbuild, gzip -9): +1.5 KiB of
// gzip bundle (6.1 -> 7.6 KiB for the JavaScript: the copy compresses against the first) and
// a second 1.06 MiB linear memory and instantiation in every isolate, from its cold start, for
// an event that is a bug and comes once; a second trap while the first instance drains would
// have to wait anyway. Waiting costs the newcomers the remaining time of the calls in flight,
// once per trap.
import * as wasm from './index.js';

const isTrap = (e) => e instanceof WebAssembly.RuntimeError;

// Calls running on the current instance.
let inFlight = 0;
// The current instance trapped: it takes no new call, and is replaced once `inFlight` is 0.
let trapped = false;
// The `resolve` of each call that arrived since, to start it on the fresh instance.
let waiting = [];
// Bumped by every replacement: a Durable Object made before it makes its wasm half again.
let generation = 0;

/** After a trap: fails the call whose poll trapped, if there was one, and stops new calls. */
function noteTrap(error, ownCall = false) {
  let failed = false;
  try {
    failed = wasm.failTrapped(error);
  } catch {
    // The trapped instance trapped again: no caller to fail from here.
  }
  trapped = true;
  const others = inFlight - (failed || ownCall ? 1 : 0);
  console.error(JSON.stringify({ event: 'wasm_trap', in_flight: others }));
  if (inFlight === 0) replace(0);
}

function done() {
  inFlight--;
  if (trapped && inFlight === 0) replace(0);
}

/** A fresh instance; the calls that waited start on it. `abandoned`: calls still running. */
function replace(abandoned) {
  trapped = false;
  inFlight = 0;
  generation++;
  wasm.__wbg_reset_state();
  guardMicrotasks();
  console.error(JSON.stringify({ event: 'wasm_instance_replaced', abandoned }));
  const starts = waiting;
  waiting = [];
  for (const start of starts) start();
}

/**
 * Resolves once the trapped instance is replaced. The promise is made in the waiting call's own
 * request context, so what follows it runs there, whichever request's end resolves it; its
 * timer (pending I/O of that request, so workerd does not take it as hung) bounds the wait.
 */
function drained(env) {
  const origin = Number(env?.ORIGIN_TIMEOUT_MS);
  const limit = (origin >= 1 && origin <= 300000 ? origin : 30000) + 15000;
  let timer;
  return new Promise((resolve) => {
    waiting.push(resolve);
    timer = setTimeout(() => {
      if (trapped) replace(inFlight);
    }, limit);
  }).then(() => clearTimeout(timer));
}

// wasm-bindgen's executor polls every Rust future from one callback it queues with
// `queueMicrotask` (a bound `Promise.resolve().then` since the Rust `start` runs
// `use_promise_microtasks`: src/platform/mod.rs says why). The same, around that callback: a
// trap is caught where it unwinds out of a poll, the trapping call is failed, and the callback
// is queued again, since the tasks due after the trapping one are still in its queue. One
// closure per callback (the executor always passes the same one), no promise more.
const resolved = Promise.resolve();
let queued;
let runQueued;
function guardMicrotasks() {
  globalThis.queueMicrotask = (callback) => {
    if (callback !== queued) {
      queued = callback;
      runQueued = () => runGuarded(callback);
    }
    resolved.then(runQueued);
  };
}
function runGuarded(callback) {
  try {
    callback();
  } catch (e) {
    if (!isTrap(e)) throw e;
    noteTrap(e);
    if (trapped) queueMicrotask(callback);
  }
}
guardMicrotasks();

// A trap anywhere else the wasm is entered from (a promise callback, a stream): no call's
// poll, so no caller to fail; the instance is still replaced.
addEventListener('error', (event) => {
  if (isTrap(event.error) && !trapped) noteTrap(event.error);
});
addEventListener('unhandledrejection', (event) => {
  if (isTrap(event.reason) && !trapped) noteTrap(event.reason);
});

// The gateway's own request-id rule (src/proxy/log.rs, `request_id`): the caller's `x-request-id`
// when it is 1 to 128 of these characters, else 32 random hex digits.
const CALLER_ID = /^[A-Za-z0-9\-_.:/+=]{1,128}$/;
function requestId(request) {
  const id = request?.headers.get('x-request-id')?.trim();
  if (id !== undefined && CALLER_ID.test(id)) return id;
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The answer to a call that trapped: the gateway's problem+json shape (src/error.rs). */
function trapProblem(request) {
  const id = requestId(request);
  const body = JSON.stringify({
    type: 'urn:edge-auth-proxy:problem:internal',
    title: 'Internal error',
    status: 500,
    detail: 'The gateway failed while handling this request and did not complete it; the origin may have received it.',
    request_id: id,
  });
  const headers = { 'content-type': 'application/problem+json', 'cache-control': 'no-store', 'x-request-id': id };
  return { id, response: new Response(body, { status: 500, headers }) };
}

function requestFailed(error, request, started) {
  if (isTrap(error) && !trapped) noteTrap(error, true);
  done();
  if (!isTrap(error)) throw error;
  const { id, response } = trapProblem(request);
  // The request's log line, which the trap kept the gateway from writing.
  let path = '';
  try {
    path = new URL(request.url).pathname.slice(0, 128);
  } catch {
    // A URL workerd handed over always parses.
  }
  const line = { request_id: id, method: request.method, path, status: 500, outcome: 'wasm_trap', total_ms: Date.now() - started };
  console.error(JSON.stringify(line));
  return response;
}

function succeeded(value) {
  done();
  return value;
}

function fetch(request, env, ctx) {
  if (trapped) return drained(env).then(() => fetch(request, env, ctx));
  inFlight++;
  const started = Date.now();
  let answer;
  try {
    answer = wasm.fetch(request, env, ctx);
  } catch (e) {
    return requestFailed(e, request, started);
  }
  return answer.then(succeeded, (e) => requestFailed(e, request, started));
}

function runFailed(error) {
  if (isTrap(error) && !trapped) noteTrap(error, true);
  done();
  throw error;
}

function scheduled(event, env, ctx) {
  if (trapped) return drained(env).then(() => scheduled(event, env, ctx));
  inFlight++;
  let run;
  try {
    run = wasm.scheduled(event, env, ctx);
  } catch (e) {
    return runFailed(e);
  }
  return run.then(succeeded, runFailed);
}

export default { fetch, scheduled };

function askFailed(error) {
  if (isTrap(error) && !trapped) noteTrap(error, true);
  done();
  if (!isTrap(error)) throw error;
  // The asking isolate takes any answer but the protocol's as "work alone".
  return trapProblem(undefined).response;
}

/** The token coordinator's Durable Object (`TOKEN_COORDINATOR`): the Rust object behind it is
 * made on first use, and again on each fresh instance. It shares the isolate's instance, so its
 * asks are counted, failed and made to wait like requests. */
export class TokenCoordinator {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = undefined;
    this.generation = -1;
  }

  fetch(request) {
    if (trapped) return drained(this.env).then(() => this.fetch(request));
    inFlight++;
    let answer;
    try {
      if (this.generation !== generation) {
        this.inner = new wasm.TokenCoordinator(this.state, this.env);
        this.generation = generation;
      }
      answer = this.inner.fetch(request);
    } catch (e) {
      return askFailed(e);
    }
    return answer.then(succeeded, askFailed);
  }
}

/** The DPoP replay guard's Durable Object (`DPOP_REPLAY`), one instance per shard: the Rust
 * object behind it is made on first use, and again on each fresh instance. Its asks share the
 * isolate's instance like the coordinator's. A failed ask answers 500: the asking isolate then
 * refuses the proof (503), never lets it through. */
export class ReplayGuard {
  constructor(state, env) {
    this.state = state;
    this.env = env;
    this.inner = undefined;
    this.generation = -1;
  }

  guard() {
    if (this.generation !== generation) {
      this.inner = new wasm.ReplayGuard(this.state, this.env);
      this.generation = generation;
    }
    return this.inner;
  }

  fetch(request) {
    if (trapped) return drained(this.env).then(() => this.fetch(request));
    inFlight++;
    let answer;
    try {
      answer = this.guard().fetch(request);
    } catch (e) {
      return guardFailed(e);
    }
    return answer.then(succeeded, guardFailed);
  }

  alarm() {
    if (trapped) return drained(this.env).then(() => this.alarm());
    inFlight++;
    let run;
    try {
      run = this.guard().alarm();
    } catch (e) {
      return runFailed(e);
    }
    return run.then(succeeded, runFailed);
  }
}

function guardFailed(error) {
  if (isTrap(error) && !trapped) noteTrap(error, true);
  done();
  if (!isTrap(error)) throw error;
  return new Response('trapped', { status: 500 });
}
