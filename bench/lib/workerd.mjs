// BENCH_RUNTIME=workerd: a bundle in plain `workerd serve` with a generated config, no Miniflare
// entry Worker in front of it, so that the CPU a request costs is the Worker's own (plus
// workerd's HTTP handling, as on Cloudflare's edge) and not also the entry Worker's 330–550 µs.

import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// A capnp text literal: the settings are ASCII (URLs, ids, JWKS JSON), so JSON's escaping of
// quotes and backslashes is capnp's too; anything else is refused rather than mangled.
function str(s) {
  const text = String(s);
  if (!/^[\x20-\x7e]*$/.test(text)) throw new Error(`workerd config: only printable ASCII bindings are supported, got ${JSON.stringify(text).slice(0, 60)}`);
  return JSON.stringify(text);
}

// TOKEN_CACHE: workerd turns a kvNamespace binding's get/put/delete into HTTP requests to the
// service it names (the protocol Miniflare's KV Worker serves). This one keeps the pairs in the
// isolate's memory, with the expiration put asks for, which is all the benchmark needs.
const KV_WORKER = `
const store = new Map();
const now = () => Date.now() / 1000;
export default {
  async fetch(request) {
    const url = new URL(request.url);
    const key = decodeURIComponent(url.pathname.slice(1));
    if (request.method === 'PUT') {
      const ttl = url.searchParams.get('expiration_ttl');
      const at = url.searchParams.get('expiration');
      const expires = ttl ? now() + Number(ttl) : at ? Number(at) : Infinity;
      const metadata = request.headers.get('cf-kv-metadata');
      store.set(key, { value: await request.arrayBuffer(), expires, metadata });
      return new Response(null, { status: 200 });
    }
    if (request.method === 'DELETE') {
      store.delete(key);
      return new Response(null, { status: 200 });
    }
    if (request.method === 'GET' && key === '') {
      // workerd's list: prefix, cursor and key_count_limit (as Miniflare's KV reads them); the
      // cursor here is the last name of the previous page.
      const prefix = url.searchParams.get('prefix') ?? '';
      const cursor = url.searchParams.get('cursor');
      const limit = Number(url.searchParams.get('key_count_limit') ?? 1000);
      const names = [...store.entries()]
        .filter(([k, v]) => k.startsWith(prefix) && v.expires > now() && (cursor === null || k > cursor))
        .map(([k]) => k)
        .sort();
      const keys = names.slice(0, limit).map((name) => ({ name }));
      if (names.length <= limit) return Response.json({ keys, list_complete: true, cacheStatus: null });
      return Response.json({ keys, list_complete: false, cursor: keys.at(-1).name, cacheStatus: null });
    }
    const hit = store.get(key);
    if (!hit || hit.expires <= now()) {
      store.delete(key);
      return new Response(null, { status: 404 });
    }
    const headers = hit.metadata ? { 'cf-kv-metadata': hit.metadata } : {};
    return new Response(hit.value, { status: 200, headers });
  },
};
`;

// `wrap`: the bundle behind an entry module of the benchmark's own, which hands the Worker an env
// made once per isolate, with `METRICS` a dataset whose writeDataPoint keeps nothing when
// `wrap.metrics` (plain workerd binds no Analytics Engine dataset; Miniflare's crosses into
// another Worker for every point, which Cloudflare's native binding does not): what is measured
// is the gateway's side, building each point and handing it over. Compare with `wrap` alone.
const WRAP_ENTRY = (metrics) => `import worker from './index.js';
const METRICS = { writeDataPoint() {} };
let wrapped;
export default {
  fetch(request, env, ctx) {
    wrapped ??= ${metrics ? '{ ...env, METRICS }' : '{ ...env }'};
    return worker.fetch(request, wrapped, ctx);
  },
};
`;

/** The capnp text of a config that serves the bundle in `outdir` on 127.0.0.1 (port from argv). */
export function workerdConfig({ outdir, bindings, kv, dir, wrap }) {
  const rel = (f) => str(path.relative(dir, path.join(outdir, f)));
  const files = readdirSync(outdir);
  if (!files.includes('index.js')) throw new Error(`${outdir}: no index.js`);
  const modules = [`(name = "index.js", esModule = embed ${rel('index.js')})`];
  if (wrap) {
    writeFileSync(path.join(dir, 'wrap.js'), WRAP_ENTRY(wrap.metrics));
    modules.unshift('(name = "wrap.js", esModule = embed "wrap.js")');
  }
  for (const f of files.filter((x) => x.endsWith('.wasm'))) modules.push(`(name = ${str(f)}, wasm = embed ${rel(f)})`);
  const binds = Object.entries(bindings).map(([k, v]) => `(name = ${str(k)}, text = ${str(v)})`);
  const services = [
    '(name = "main", worker = .mainWorker)',
    // Loopback origin, token endpoint and JWKS server: workerd's default network refuses them.
    '(name = "internet", network = (allow = ["public", "private", "local"]))',
  ];
  if (kv) {
    writeFileSync(path.join(dir, 'kv.js'), KV_WORKER);
    services.push('(name = "kv", worker = (modules = [(name = "kv.js", esModule = embed "kv.js")], compatibilityDate = "2026-04-01"))');
    binds.push('(name = "TOKEN_CACHE", kvNamespace = "kv")');
  }
  return `using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    ${services.join(',\n    ')},
  ],
  sockets = [(name = "http", address = "127.0.0.1:0", http = (), service = "main")],
);

const mainWorker :Workerd.Worker = (
  modules = [
    ${modules.join(',\n    ')},
  ],
  bindings = [
    ${binds.join(',\n    ')},
  ],
  compatibilityDate = "2026-04-01",
  globalOutbound = "internet",
);
`;
}

/**
 * Spawns `workerd serve` for one bundle; resolves once its socket listens. The same shape as
 * run.mjs's Miniflare start: { url, pid, stderr(), dispose() }. `pid` is workerd itself (the
 * npm package's bin is a native binary, not a Node wrapper), so /proc/<pid>/stat is its CPU.
 */
export async function startWorkerd({ outdir, bindings, kv, inspectorPort, wrap }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-workerd-'));
  const config = path.join(dir, 'config.capnp');
  writeFileSync(config, workerdConfig({ outdir, bindings, kv, dir, wrap }));
  const bin = require('workerd').default;
  const child = spawn(bin, ['serve', config, '--control-fd=3', ...(inspectorPort ? [`--inspector-addr=127.0.0.1:${inspectorPort}`] : [])], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'], cwd: dir });
  const stderr = [];
  child.stdout.resume();
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr.push(d);
    if (stderr.length > 50) stderr.shift();
  });
  const exited = new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
  // A runner that dies on an error must not leave its workerd serving.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  exited.then(() => process.off('exit', reap));
  const port = await new Promise((resolve, reject) => {
    let buf = '';
    child.stdio[3].setEncoding('utf8');
    child.stdio[3].on('data', (d) => {
      buf += d;
      for (const line of buf.split('\n')) {
        try {
          const m = JSON.parse(line);
          if (m.event === 'listen' && m.socket === 'http') resolve(m.port);
        } catch {
          /* partial line */
        }
      }
    });
    exited.then(({ code, signal }) => reject(new Error(`workerd exited (${code ?? signal}) before listening:\n${stderr.join('')}`)));
    setTimeout(() => reject(new Error(`workerd did not listen within 30 s:\n${stderr.join('')}`)), 30_000).unref();
  });
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    stderr: () => stderr.join(''),
    async dispose() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
