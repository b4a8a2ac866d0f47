// A fleet of Worker isolates in one Miniflare: N workers running the same BUILT script, each with
// its own TOKEN_CACHE namespace (the worst case of KV propagation: no isolate ever sees another's
// writes), and, unless `coordinator: false`, TOKEN_COORDINATOR bound across all of them to the
// TokenCoordinator class exported by the first. Used by tests/e2e/coordinator.test.mjs and
// bench/fleet.mjs.

import path from 'node:path';

import { Miniflare } from 'miniflare';

import { SCRIPT, captureOutput, disposeOnce } from './harness.mjs';

/**
 * Starts `n` isolates. `bindings`: the settings, or `(i) => settings` for isolate `i` (0-based).
 * `coordinator`: `true` (the first worker's TokenCoordinator), `false` (no binding: today's
 * behaviour), `{ script }`, an inline module exporting a `TokenCoordinator` class to bind instead
 * (a broken coordinator, say), or `{ bindings }`, the built class hosted by a worker of its own
 * with these settings (its own TOKEN_CACHE too), so that what the coordinator does can be told
 * from what the isolates do. `workerOptions`: more Miniflare options for every isolate
 * (`ratelimits`, say). `script`: another entry module for every isolate (default the build's
 * `index.js`), in a directory that also holds what it imports.
 */
export async function startFleet({ bindings, n = 4, coordinator = true, workerOptions = {}, script = SCRIPT, verbose = process.env.E2E_VERBOSE === '1' } = {}) {
  const out = captureOutput({ label: 'fleet', verbose });
  const names = Array.from({ length: n }, (_, i) => `isolate-${i}`);
  const external = typeof coordinator === 'object' && coordinator !== null;
  const host = external ? (coordinator.script ? 'coordinator-stand-in' : 'coordinator-host') : names[0];
  const durableObjects = coordinator ? { TOKEN_COORDINATOR: { className: 'TokenCoordinator', scriptName: host } } : undefined;
  const built = {
    modules: true,
    scriptPath: script,
    modulesRoot: path.dirname(script),
    // `.js` as ES modules too: a wrapping `script` imports the build's `index.js`.
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-04-01',
  };
  const workers = names.map((name, i) => ({
    name,
    ...built,
    kvNamespaces: { TOKEN_CACHE: `token-cache-${name}` },
    bindings: typeof bindings === 'function' ? bindings(i) : bindings,
    ...(durableObjects ? { durableObjects } : {}),
    ...workerOptions,
  }));
  if (external && coordinator.script) {
    workers.push({
      name: host,
      modules: true,
      script: coordinator.script,
      compatibilityDate: '2026-04-01',
    });
  } else if (external) {
    workers.push({ name: host, ...built, kvNamespaces: { TOKEN_CACHE: `token-cache-${host}` }, bindings: coordinator.bindings });
  }
  const mf = new Miniflare({
    workers,
    cf: false,
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio: out.handleRuntimeStdio,
  });
  await out.ready(mf);
  const handles = await Promise.all(names.map((name) => mf.getWorker(name)));
  return {
    mf,
    names,
    /** Requests isolate `i` (0-based). */
    fetch(i, p, init = {}) {
      return handles[i].fetch(new URL(p, 'http://gateway.test').href, { redirect: 'manual', ...init });
    },
    /** Isolate `i`'s TOKEN_CACHE namespace. */
    kv(i) {
      return mf.getKVNamespace('TOKEN_CACHE', names[i]);
    },
    output: out.output,
    jsonLogs: out.jsonLogs,
    requestLogs: out.requestLogs,
    waitForRequestLogs: out.waitForRequestLogs,
    dispose: disposeOnce(mf),
  };
}
