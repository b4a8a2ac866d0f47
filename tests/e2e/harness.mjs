// Runs the BUILT Worker (build/index.js + build/index_bg.wasm) in Miniflare, with its console
// output captured, and gives tests a small surface: fetch, raw (node:http, for headers undici
// refuses to send), the TOKEN_CACHE namespace, the log lines, dispose.
//
// Set E2E_VERBOSE=1 to echo the Worker's console output while the tests run.

import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Miniflare } from 'miniflare';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// E2E_WORKER_SCRIPT points the suite at another build of the Worker (a module script).
export const SCRIPT = path.resolve(ROOT, process.env.E2E_WORKER_SCRIPT ?? 'build/index.js');

if (!existsSync(SCRIPT)) {
  throw new Error(`${path.relative(process.cwd(), SCRIPT)} does not exist: build the Worker first (npm run build)`);
}

// Secrets and settings the tests look for in outputs; unique enough never to appear by chance.
export const CLIENT_ID = 'test-client';
export const CLIENT_SECRET = 'test-client-secret-Q7v2kX9pLm';
export const API_KEY = 'test-api-key-Zr4Wn8sT1c';
export const ISSUER = 'https://issuer.test/';
export const AUDIENCE = 'profile-api';

/** The settings of a working gateway in front of `origin`, `token` and `key` (a makeKey()). */
export function baseBindings({ origin, token, key, keys, ...extra }) {
  const set = keys ?? [key];
  return {
    ORIGIN_URL: origin.url,
    TOKEN_URL: `${token.url}?grant_type=client_credentials`,
    CLIENT_ID,
    CLIENT_SECRET,
    API_KEY,
    JWT_ALGORITHMS: 'RS256',
    JWT_JWKS: JSON.stringify({ keys: set.map((k) => k.publicJwk) }),
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    ...extra,
  };
}

/** A fresh temporary directory for persisted KV; `rm()` removes it. */
export function tempDir(prefix = 'eap-e2e-') {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, rm: () => rmSync(dir, { recursive: true, force: true }) };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; returns the last value. */
export async function waitFor(fn, timeoutMs = 2000, stepMs = 20) {
  const until = Date.now() + timeoutMs;
  let v = await fn();
  while (!v && Date.now() < until) {
    await sleep(stepMs);
    v = await fn();
  }
  return v;
}

/**
 * What a Miniflare's workers print, captured per stream (so a line split across chunks is
 * never interleaved with the other stream), with readers of it: `handleRuntimeStdio` goes to
 * Miniflare; `output`, `logs`, `jsonLogs`, `requestLogs` and `waitForRequestLogs` read it;
 * `ready(mf)` awaits the instance and, if it fails to start, disposes it and puts the output in
 * the error.
 */
export function captureOutput({ label, verbose = process.env.E2E_VERBOSE === '1' }) {
  const captured = { stdout: [], stderr: [] };
  const tap = (stream, name) => {
    stream.setEncoding?.('utf8');
    stream.on('data', (d) => {
      captured[name].push(String(d));
      if (verbose) process.stderr.write(`[${label} ${name}] ${d}`);
    });
  };
  const output = () => `${captured.stdout.join('')}\n${captured.stderr.join('')}`;
  const logs = () => output().split('\n').filter((l) => l.trim() !== '');
  /** Every console line that is a JSON object. */
  const jsonLogs = () =>
    logs().flatMap((l) => {
      try {
        const v = JSON.parse(l);
        return v && typeof v === 'object' && !Array.isArray(v) ? [v] : [];
      } catch {
        return [];
      }
    });
  /** The per-request log lines (JSON objects with a request_id). */
  const requestLogs = () => jsonLogs().filter((l) => typeof l.request_id === 'string');
  return {
    handleRuntimeStdio(stdout, stderr) {
      tap(stdout, 'stdout');
      tap(stderr, 'stderr');
    },
    output,
    logs,
    jsonLogs,
    requestLogs,
    /** Waits until `n` request log lines have been captured (console output is asynchronous). */
    async waitForRequestLogs(n, timeoutMs = 3000) {
      await waitFor(() => requestLogs().length >= n, timeoutMs);
      return requestLogs();
    },
    async ready(mf) {
      try {
        return await mf.ready;
      } catch (err) {
        await mf.dispose().catch(() => {});
        err.message += `\n--- workerd output ---\n${output()}`;
        throw err;
      }
    },
  };
}

/** `dispose()` for `mf` that may be called more than once. */
export function disposeOnce(mf) {
  let disposed = false;
  return async () => {
    if (disposed) return;
    disposed = true;
    await mf.dispose();
  };
}

/**
 * Starts the built Worker in Miniflare. `bindings` are the settings (vars and secrets alike are
 * plain string bindings). `kvPersist`: a directory to persist TOKEN_CACHE in (default: memory).
 * `script`: another entry module (default the build's `index.js`), in a directory that also
 * holds what it imports. `options`: more Miniflare options, over these (other bindings, say).
 */
export async function startGateway({ bindings, kvPersist = false, script = SCRIPT, options = {}, verbose = process.env.E2E_VERBOSE === '1' } = {}) {
  const out = captureOutput({ label: 'worker', verbose });
  const mf = new Miniflare({
    modules: true,
    scriptPath: script,
    modulesRoot: path.dirname(script),
    // `.js` as ES modules too: a wrapping `script` imports the build's `index.js`.
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2026-04-01',
    kvNamespaces: ['TOKEN_CACHE'],
    kvPersist,
    bindings,
    // Never fetch https://workers.cloudflare.com/cf.json: no network beyond loopback.
    cf: false,
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio: out.handleRuntimeStdio,
    ...options,
  });
  const url = new URL(String(await out.ready(mf)));
  const kv = await mf.getKVNamespace('TOKEN_CACHE').catch(() => undefined);

  return {
    mf,
    url,
    kv,
    /** Requests the gateway through Miniflare (undici). `path` is e.g. '/account/getprofile?x=1'. */
    fetch(p, init = {}) {
      return mf.dispatchFetch(new URL(p, 'http://gateway.test').href, { redirect: 'manual', ...init });
    },
    /**
     * A request over a plain node:http connection to the gateway's socket, for headers that
     * fetch refuses to send (Connection, Keep-Alive, TE, Upgrade, Transfer-Encoding...).
     * Resolves `{ status, headers, rawHeaders, body: Buffer }`; node:http reads header values
     * as latin1, so `Buffer.from(value, 'latin1')` is the bytes on the wire.
     */
    raw(p, { method = 'GET', headers = {}, body } = {}) {
      return new Promise((resolve, reject) => {
        const req = http.request({ host: url.hostname, port: url.port, path: p, method, headers, agent: false }, (res) => {
          const parts = [];
          res.on('data', (d) => parts.push(d));
          res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
      });
    },
    /** Every key of TOKEN_CACHE with its value (as text). */
    async kvEntries() {
      const out = [];
      let cursor;
      do {
        const page = await kv.list({ cursor });
        for (const { name } of page.keys) out.push({ name, value: await kv.get(name) });
        cursor = page.list_complete ? undefined : page.cursor;
      } while (cursor);
      return out;
    },
    output: out.output,
    logs: out.logs,
    jsonLogs: out.jsonLogs,
    requestLogs: out.requestLogs,
    waitForRequestLogs: out.waitForRequestLogs,
    dispose: disposeOnce(mf),
  };
}

/** Reads a response as `{ status, headers (Headers), text, json }` (json undefined if not JSON). */
export async function read(res) {
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** `customer-auth: JWT <jwt>` headers plus `extra`. */
export const withJwt = (jwt, extra = {}) => ({ 'customer-auth': `JWT ${jwt}`, ...extra });

/**
 * A whole fresh stack, the one way a test or a benchmark starts the Worker. By default (`servers`
 * true): a test origin, a token endpoint expecting the harness's client credentials (with
 * `tokenOptions`), an RS256 key, and `bindings` merged over `baseBindings` for them. Then `size`
 * gateways in front of them:
 * - `size` 1 and no `coordinator` (the default): one gateway, `gw` (`startGateway`, with
 *   `kvPersist`, `script`, `options`);
 * - `size` n: a fleet, `fleet`, of n isolates in one Miniflare, each with its own TOKEN_CACHE;
 *   `coordinator` (default true) binds TOKEN_COORDINATOR across them (see `startIsolates`);
 *   `workerOptions` are more Miniflare options for every isolate.
 * With `servers: false` nothing else is started and `bindings` are the settings as given (an
 * object, or `(i) => settings` for isolate `i`). `close()` closes everything it started.
 */
export async function startStack({
  size = 1,
  servers = true,
  bindings = {},
  tokenOptions = {},
  coordinator,
  workerOptions,
  kvPersist,
  script,
  options,
  verbose,
} = {}) {
  let origin;
  let token;
  let key;
  let settings = bindings;
  if (servers) {
    const { startOrigin, startTokenEndpoint, makeKey } = await import('./servers.mjs');
    [origin, token, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, ...tokenOptions }),
      makeKey('RS256'),
    ]);
    settings = typeof bindings === 'function'
      ? (i) => baseBindings({ origin, token, key, ...bindings(i) })
      : baseBindings({ origin, token, key, ...bindings });
  }
  const closeServers = () => Promise.all([origin?.close(), token?.close()]);
  const isFleet = size > 1 || coordinator !== undefined;
  let gw;
  let fleet;
  try {
    if (isFleet) {
      fleet = await startIsolates({ bindings: settings, n: size, coordinator: coordinator ?? true, workerOptions, script, verbose });
    } else {
      gw = await startGateway({ bindings: settings, kvPersist, script, options, verbose });
    }
  } catch (err) {
    await closeServers();
    throw err;
  }
  let jwt;
  if (servers) {
    const { signJwt } = await import('./servers.mjs');
    jwt = await signJwt(key);
  }
  return {
    origin,
    token,
    key,
    gw,
    fleet,
    jwt,
    size,
    async close() {
      await (gw ?? fleet).dispose();
      await closeServers();
    },
  };
}

/**
 * `n` isolates in one Miniflare, running the same BUILT script, each with its own TOKEN_CACHE
 * namespace (the worst case of KV propagation: no isolate ever sees another's writes). Starts `n` isolates. `bindings`: the settings, or `(i) => settings` for isolate `i` (0-based).
 * `coordinator`: `true` (the first worker's TokenCoordinator), `false` (no binding: today's
 * behaviour), `{ script }`, an inline module exporting a `TokenCoordinator` class to bind instead
 * (a broken coordinator, say), or `{ bindings }`, the built class hosted by a worker of its own
 * with these settings (its own TOKEN_CACHE too), so that what the coordinator does can be told
 * from what the isolates do. `workerOptions`: more Miniflare options for every isolate
 * (`ratelimits`, say). `script`: another entry module for every isolate (default the build's
 * `index.js`), in a directory that also holds what it imports.
 */
async function startIsolates({ bindings, n, coordinator = true, workerOptions = {}, script = SCRIPT, verbose = process.env.E2E_VERBOSE === '1' } = {}) {
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

/**
 * Runs the Worker's scheduled (cron) handler once, as a cron trigger would; resolves to
 * workerd's `{ outcome, noRetry }`.
 */
export async function scheduled(gw, cron = '*/5 * * * *') {
  const worker = await gw.mf.getWorker();
  return worker.scheduled({ cron, scheduledTime: new Date() });
}

/**
 * The request log line whose `request_id` is `requestId`, once it has been captured (console
 * output is asynchronous); `undefined` if it never is.
 */
export async function requestLog(gw, requestId, timeoutMs = 3000) {
  return waitFor(() => gw.requestLogs().find((l) => l.request_id === requestId), timeoutMs);
}
