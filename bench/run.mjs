// The benchmark: edge-auth-proxy against the origin alone, a bare forwarding Worker and a
// reference jose Worker, in the same workerd, with the same loopback origin, token endpoint and
// keys, under the same load (autocannon). See bench/README.md.
//
//   npm run bench              # setup + release build + this file (about 6 minutes on 2 cores)
//   BENCH_QUICK=1 node bench/run.mjs   # a smoke run of well under a minute
//   BENCH_ONLY=startup node bench/run.mjs   # bundle sizes and spawn → first 200 only (medians)
//   node bench/run.mjs --render FILE.json   # a run's chart and tables again, from its JSON
//   node bench/run.mjs --page               # both runs' charts and tables, and the top of bench/README.md
//
// Knobs (environment): BENCH_QUICK=1, BENCH_DURATION (seconds per cell), BENCH_CONNECTIONS
// ("1,8,64"), BENCH_WORKLOADS ("hot,first-rs256,first-es256,invalid,mixed,reject-early"), BENCH_TARGETS
// (ids, see TARGETS), BENCH_JWKS_URL=1 (also run both Workers with keys from JWKS_URL),
// BENCH_POLICY=1 (also run the gateway with one realistic route policy: issuers, audiences,
// scopes, one claim, one claims_to_headers; the benchmark's tokens all satisfy it),
// BENCH_OUT (results file stem, default bench/results/latest or bench/results/quick),
// BENCH_ONLY=startup (only the bundles and BENCH_STARTUPS interleaved spawns per Worker, default
// 7; results in bench/results/startup.json unless BENCH_OUT says otherwise),
// BENCH_ASSERTION=1 (also run the gateway with the gateway assertion on, signed with an ES256 and
// with an Ed25519 key: GATEWAY_ASSERTION_HEADER and GATEWAY_SIGNING_KEY, the same bundle),
// BENCH_RUNTIME=workerd (each bundle in plain `workerd serve` with a generated config instead of
// behind Miniflare's entry Worker, see lib/workerd.mjs; results in bench/results/workerd-*).

import { fork } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

import autocannon from 'autocannon';
import { Miniflare } from 'miniflare';

import { cpuMicros, machine, workerdPids } from './lib/proc.mjs';
import { AUDIENCE, ISSUER, invalidTokens, makeKey, signJwt, signMany } from './lib/tokens.mjs';
import { renderChart } from './lib/chart.mjs';
import { BEFORE, BEGIN as PAGE_BEGIN, END as PAGE_END, renderPage } from './lib/page.mjs';
import { renderMarkdown, summarize } from './lib/report.mjs';
import { startWorkerd } from './lib/workerd.mjs';

const require = createRequire(import.meta.url);
const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');
const OUT = path.join(BENCH, '.out');

process.env.WRANGLER_SEND_METRICS = 'false';

// ---------------------------------------------------------------------------------------------
// settings

const QUICK = process.env.BENCH_QUICK === '1';
const ONLY_STARTUP = process.env.BENCH_ONLY === 'startup';
if (process.env.BENCH_ONLY && !ONLY_STARTUP) throw new Error(`BENCH_ONLY=${process.env.BENCH_ONLY}: the only choice is "startup"`);
const RUNTIME = process.env.BENCH_RUNTIME ?? 'miniflare';
if (!['miniflare', 'workerd'].includes(RUNTIME)) throw new Error(`BENCH_RUNTIME=${RUNTIME}: the choices are "miniflare" (default) and "workerd"`);
const list = (v, dflt) => (v ? v.split(',').map((s) => s.trim()).filter(Boolean) : dflt);
const SETTINGS = {
  mode: QUICK ? 'quick' : 'full',
  runtime: RUNTIME,
  durationS: Number(process.env.BENCH_DURATION ?? (QUICK ? 1.5 : 5)),
  connections: list(process.env.BENCH_CONNECTIONS, QUICK ? ['8'] : ['1', '8', '64']).map(Number),
  workloads: list(process.env.BENCH_WORKLOADS, ['hot', 'first-rs256', 'first-es256', 'invalid', 'mixed', 'reject-early']),
  startups: ONLY_STARTUP ? Number(process.env.BENCH_STARTUPS ?? 7) : QUICK ? 1 : 3,
  warmupS: QUICK ? 1 : 2,
  // The most first-seen tokens one cell may use: a cell ends at durationS or after this many
  // requests, whichever comes first, so that every token it sends is new to that Worker.
  perCellTokens: Number(process.env.BENCH_CELL_TOKENS ?? (QUICK ? 3000 : 12000)),
  jwksUrl: process.env.BENCH_JWKS_URL === '1',
  policy: process.env.BENCH_POLICY === '1',
  assertion: process.env.BENCH_ASSERTION === '1',
};
const STEM = process.env.BENCH_OUT ?? path.join(BENCH, 'results', `${RUNTIME === 'workerd' ? 'workerd-' : ''}${ONLY_STARTUP ? 'startup' : QUICK ? 'quick' : 'latest'}`);

const CLIENT_ID = 'bench-client';
const CLIENT_SECRET = 'bench-client-secret-9d2Lq';
const API_KEY = 'bench-api-key-Vx81';
// GET without a body: workerd (as Miniflare runs it) closes a keep-alive connection when a Worker
// answers without reading the request body, so every rejected POST would cost the load generator
// a reconnect that has nothing to do with the Worker. On Cloudflare's edge the caller's
// connection is not workerd's, so that cost is not the Workers' either.
const PATH = '/account/getprofile';

const log = (...a) => console.error(...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round = (x, d = 0) => (Number.isFinite(x) ? Math.round(x * 10 ** d) / 10 ** d : null);

// ---------------------------------------------------------------------------------------------
// workloads: what each request carries and which status it must get

const WORKLOADS = {
  hot: { label: 'hot path: one valid RS256 token, repeated' },
  'first-rs256': { label: 'first-seen RS256: a new token on every request', firstSeen: { rs: 1 } },
  'first-es256': { label: 'first-seen ES256: a new token on every request', firstSeen: { es: 1 } },
  invalid: { label: 'invalid: forged RS256/ES256, expired, wrong aud/iss, unknown kid, alg none, HS256 confusion, malformed, missing' },
  'reject-early': { label: 'rejected before any signature check: malformed, missing, alg none, unknown kid (no crypto: the plumbing alone)' },
  mixed: { label: 'mixed: 75% 32 repeat callers, 10% new RS256, 5% new ES256, 10% invalid', firstSeen: { rs: 0.1, es: 0.05 } },
};
const EARLY = new Set(['malformed', 'missing', 'alg-none', 'unknown-kid']);
// 20 slots of the mixed workload.
const MIXED = [...Array(15).fill('session'), 'rs', 'rs', 'es', 'invalid', 'invalid'];

// ---------------------------------------------------------------------------------------------
// bundles: what `wrangler deploy` would upload, and what the benchmark runs

const WORKERS = {
  bare: { dir: 'bench/workers/bare' },
  'edge-auth-proxy': { dir: 'bench/workers/edge-auth-proxy' },
  'jose-worker': { dir: 'bench/workers/jose-worker' },
};

function bundle(name) {
  const outdir = path.join(OUT, name);
  rmSync(outdir, { recursive: true, force: true });
  const wrangler = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
  const text = execFileSync(wrangler, ['deploy', '--dry-run', '--outdir', outdir], {
    cwd: path.join(ROOT, WORKERS[name].dir),
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', NO_COLOR: '1', FORCE_COLOR: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m = /Total Upload:\s*([\d.]+)\s*KiB\s*\/\s*gzip:\s*([\d.]+)\s*KiB/.exec(text);
  if (!m) throw new Error(`wrangler deploy --dry-run for ${name} printed no upload size:\n${text}`);
  return { outdir, uploadKiB: Number(m[1]), gzipKiB: Number(m[2]) };
}

// ---------------------------------------------------------------------------------------------
// the loopback servers, in their own process

/** The gateway assertion's settings with the test key `es256` or `ed25519` (tests/fixtures). */
function assertionBindings(key) {
  const keys = JSON.parse(readFileSync(path.join(ROOT, 'tests', 'fixtures', 'signing-keys.json'), 'utf8'));
  return { GATEWAY_ASSERTION_HEADER: 'x-gateway-assertion', GATEWAY_SIGNING_KEY: JSON.stringify(keys[key === 'es256' ? 'es256_a' : 'ed25519']) };
}

async function startServers(jwks) {
  const child = fork(path.join(BENCH, 'lib', 'servers.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const pending = new Map();
  let nextId = 1;
  let resolveReady;
  const ready = new Promise((r) => (resolveReady = r));
  child.on('message', (m) => {
    if (m.ready) resolveReady(m.ready);
    else if (m.id && pending.has(m.id)) {
      pending.get(m.id)(m.stats);
      pending.delete(m.id);
    }
  });
  child.send({ init: { clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, apiKey: API_KEY, jwks } });
  const urls = await ready;
  return {
    ...urls,
    pid: child.pid,
    stats() {
      const id = nextId++;
      return new Promise((r) => {
        pending.set(id, r);
        child.send({ id, cmd: 'stats' });
      });
    },
    close() {
      child.disconnect();
      child.kill();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Workers under test: each in its own Miniflare, so its own workerd process, or (BENCH_RUNTIME=
// workerd) in its own plain workerd. Either way: { url, pid (the workerd process), stderr(), dispose() }.

const startWorker = (spec) => (RUNTIME === 'workerd' ? startWorkerd(spec) : startMiniflare(spec));

async function startMiniflare({ outdir, bindings, kv }) {
  const before = workerdPids();
  const stderr = [];
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(outdir, 'index.js'),
    modulesRoot: outdir,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-01',
    kvNamespaces: kv ? ['TOKEN_CACHE'] : [],
    bindings,
    cf: false,
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio(out, err) {
      // Both Workers log one JSON line per request: drain it, keep the tail of stderr for errors.
      out.resume();
      err.setEncoding('utf8');
      err.on('data', (d) => {
        stderr.push(d);
        if (stderr.length > 50) stderr.shift();
      });
    },
  });
  const url = new URL(String(await mf.ready));
  const fresh = [...workerdPids()].filter((p) => !before.has(p));
  if (fresh.length !== 1) throw new Error(`expected one new workerd process, found ${fresh.length}`);
  return { url: url.origin, pid: fresh[0], stderr: () => stderr.join(''), dispose: () => mf.dispose() };
}

const call = (url, jwt, extra = {}) => fetch(url + PATH, { headers: { accept: 'application/json', ...(jwt ? { 'customer-auth': `JWT ${jwt}` } : {}), ...extra } });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** BENCH_POLICY=1: the benchmark's route with a realistic policy, which every bench token meets. */
const POLICY_ROUTES = JSON.stringify([
  {
    prefix: '/account',
    methods: ['GET', 'POST'],
    issuers: [ISSUER],
    audiences: [AUDIENCE],
    scopes: ['profile:read'],
    claims: { tier: ['gold', 'platinum'] },
    claims_to_headers: { 'x-org-id': 'org.id' },
  },
]);

/** The settings every gateway-like target (edge-auth-proxy, jose) runs with. */
const gatewayBindingsFor = (servers, jwks) => ({
  ORIGIN_URL: servers.origin,
  TOKEN_URL: `${servers.token}?grant_type=client_credentials`,
  CLIENT_ID,
  CLIENT_SECRET,
  API_KEY,
  JWT_ALGORITHMS: 'RS256,ES256',
  JWT_JWKS: JSON.stringify(jwks),
  JWT_ISSUER: ISSUER,
  JWT_AUDIENCE: AUDIENCE,
});

/**
 * BENCH_ONLY=startup: spawn → first 200 (a valid RS256 token, so the first answer includes the
 * token endpoint call and a signature check), `SETTINGS.startups` times per Worker, the Workers
 * interleaved and their order alternating from one round to the next, so that drift in the
 * machine's load falls on all of them alike. Medians are reported.
 */
async function startupOnly({ bundles, versions, host, started }) {
  const rs = makeKey('RS256', 'bench-rs256');
  const es = makeKey('ES256', 'bench-es256');
  const jwks = { keys: [rs.publicJwk, es.publicJwk] };
  const hot = signJwt(rs);
  const servers = await startServers(jwks);
  const gatewayBindings = gatewayBindingsFor(servers, jwks);
  const targets = [
    { id: 'bare', bundle: 'bare', bindings: { ORIGIN_URL: servers.origin } },
    { id: 'edge-auth-proxy', bundle: 'edge-auth-proxy', bindings: gatewayBindings, kv: true },
    { id: 'jose', bundle: 'jose-worker', bindings: gatewayBindings, kv: true },
  ].filter((tg) => !process.env.BENCH_TARGETS || list(process.env.BENCH_TARGETS).includes(tg.id));
  const samples = Object.fromEntries(targets.map((tg) => [tg.id, []]));
  try {
    for (let round = 0; round < SETTINGS.startups; round++) {
      const order = round % 2 === 0 ? targets : [...targets].reverse();
      for (const tg of order) {
        const { worker, startup } = await startMeasured({ id: tg.id, outdir: bundles[tg.bundle].outdir, bindings: tg.bindings, kv: tg.kv }, 1, hot);
        await worker.dispose();
        samples[tg.id].push(startup.samples[0]);
        log(`  round ${round + 1}/${SETTINGS.startups} ${tg.id.padEnd(16)} ready ${startup.readyMs} ms, first 200 ${startup.first200Ms} ms`);
      }
    }
  } finally {
    servers.close();
  }
  const results = { settings: SETTINGS, machine: host, versions, date: new Date().toISOString(), command: `${RUNTIME === 'workerd' ? 'BENCH_RUNTIME=workerd ' : ''}BENCH_ONLY=startup node bench/run.mjs`, bundles: {}, startup: {} };
  for (const [k, b] of Object.entries(bundles)) results.bundles[k] = { uploadKiB: b.uploadKiB, gzipKiB: b.gzipKiB };
  for (const tg of targets) {
    const xs = samples[tg.id];
    results.startup[tg.id] = { spawns: xs.length, readyMs: median(xs.map((x) => x.readyMs)), first200Ms: median(xs.map((x) => x.first200Ms)), samples: xs };
  }
  const jose = results.startup.jose?.first200Ms;
  const lines = ['| Worker | bundle (KiB) | gzip (KiB) | spawns | ready, median (ms) | first 200, median (ms) | first 200 / jose |', '|---|---:|---:|---:|---:|---:|---:|'];
  for (const tg of targets) {
    const b = results.bundles[tg.bundle];
    const st = results.startup[tg.id];
    lines.push(`| ${tg.id} | ${b.uploadKiB} | ${b.gzipKiB} | ${st.spawns} | ${st.readyMs} | ${st.first200Ms} | ${jose ? round(st.first200Ms / jose, 2) : '-'} |`);
  }
  results.wallClockS = round((Date.now() - started) / 1000, 1);
  writeFileSync(`${STEM}.json`, `${JSON.stringify(results, null, 2)}\n`);
  log(`bench: done in ${results.wallClockS}s; wrote ${path.relative(process.cwd(), STEM)}.json`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

/** Spawn → first 200, `times` times; the last instance is kept for the benchmark. */
async function startMeasured(spec, times, jwt) {
  const samples = [];
  let kept;
  for (let i = 0; i < times; i++) {
    const t0 = performance.now();
    const w = await startWorker(spec);
    const tReady = performance.now();
    let status = 0;
    let attempts = 0;
    while (status !== 200) {
      attempts++;
      try {
        const res = await call(w.url, jwt);
        await res.arrayBuffer();
        status = res.status;
      } catch {
        status = 0;
      }
      if (status !== 200) {
        // A configuration error does not heal by waiting (e.g. a build that refuses JWKS_URL).
        if (status === 500) throw new Error(`${spec.id}: answered 500 (configuration refused?)\n${w.stderr()}`);
        if (performance.now() - t0 > 30_000) throw new Error(`${spec.id}: no 200 within 30 s (last status ${status})\n${w.stderr()}`);
        await sleep(20);
      }
    }
    const tFirst = performance.now();
    samples.push({ readyMs: round(tReady - t0, 1), first200Ms: round(tFirst - t0, 1), attempts });
    if (i < times - 1) await w.dispose();
    else kept = w;
  }
  return {
    worker: kept,
    startup: { samples, readyMs: median(samples.map((s) => s.readyMs)), first200Ms: median(samples.map((s) => s.first200Ms)) },
  };
}

// ---------------------------------------------------------------------------------------------
// one cell: a target under one workload at one concurrency

async function runCell({ target, workloadId, connections, next, cap, durationS, servers }) {
  const latencies = new Float64Array(Math.max(cap ?? 0, 1 << 16));
  let lat = latencies;
  let n = 0;
  let mismatched = 0;
  const statuses = {};

  const baseHeaders = { accept: 'application/json' };
  const request = {
    method: 'GET',
    path: PATH,
    headers: baseHeaders,
    setupRequest(req, context) {
      const t = next();
      context.expect = t.expect;
      const headers = { ...baseHeaders };
      if (t.jwt) headers['customer-auth'] = `JWT ${t.jwt}`;
      return { ...req, headers };
    },
    onResponse(status, _body, context) {
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status !== context.expect) mismatched++;
    },
  };

  const before = { servers: await servers.stats(), serversCpu: cpuMicros(servers.pid), workerCpu: target.pid ? cpuMicros(target.pid) : 0 };
  const t0 = performance.now();
  const opts = { url: target.url, connections, pipelining: 1, timeout: 10, requests: [request], excludeErrorStats: false };
  if (cap) opts.amount = cap;
  else opts.duration = durationS;
  const result = await new Promise((resolve, reject) => {
    const inst = autocannon(opts, (err, res) => (err ? reject(err) : resolve(res)));
    inst.on('response', (_client, _status, _bytes, ms) => {
      if (n === lat.length) {
        const bigger = new Float64Array(lat.length * 2);
        bigger.set(lat);
        lat = bigger;
      }
      lat[n++] = ms;
    });
    // With a request cap the run still ends at durationS.
    if (cap) setTimeout(() => inst.stop(), durationS * 1000);
  });
  const elapsedS = (performance.now() - t0) / 1000;
  // Requests still in flight when the load generator stopped finish now, inside this cell.
  await sleep(250);
  const after = { servers: await servers.stats(), serversCpu: cpuMicros(servers.pid), workerCpu: target.pid ? cpuMicros(target.pid) : 0 };

  const sorted = lat.subarray(0, n).sort();
  const pct = (p) => (n ? sorted[Math.min(n - 1, Math.ceil((p / 100) * n) - 1)] : null);
  const done = n;
  return {
    target: target.id,
    workload: workloadId,
    connections,
    elapsedS: round(elapsedS, 2),
    requests: done,
    rps: round(done / elapsedS, 1),
    latencyMs: { p50: round(pct(50), 3), p99: round(pct(99), 3), max: round(n ? sorted[n - 1] : null, 3) },
    statuses,
    errors: mismatched + result.errors,
    errorDetail: { unexpectedStatus: mismatched, socketErrors: result.errors - result.timeouts, timeouts: result.timeouts },
    workerCpuUsPerRequest: target.pid ? round((after.workerCpu - before.workerCpu) / done, 1) : null,
    serversCpuUsPerRequest: round((after.serversCpu - before.serversCpu) / done, 1),
    originCalls: after.servers.origin.requests - before.servers.origin.requests,
    originCallsWithoutCredentials: after.servers.origin.withoutCredentials - before.servers.origin.withoutCredentials,
    tokenEndpointCalls: after.servers.tokenCalls - before.servers.tokenCalls,
    jwksCalls: after.servers.jwksCalls - before.servers.jwksCalls,
  };
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const started = Date.now();
  const scriptPath = path.join(ROOT, 'build', 'index.js');
  if (!existsSync(scriptPath)) throw new Error('build/index.js is missing: run `npm run build` (or `npm run bench`, which builds)');
  mkdirSync(path.dirname(STEM), { recursive: true });

  const versions = {
    node: process.version,
    workerd: require('workerd/package.json').version,
    miniflare: require('miniflare/package.json').version,
    wrangler: require('wrangler/package.json').version,
    autocannon: require('autocannon/package.json').version,
    jose: require('jose/package.json').version,
  };
  const host = machine();
  log(`bench: ${SETTINGS.mode} mode, ${SETTINGS.durationS}s per cell, connections ${SETTINGS.connections.join('/')}, on ${host.cpu} (${host.nproc} CPUs)`);

  // Bundles.
  log('bench: wrangler deploy --dry-run for each Worker');
  const bundles = {};
  for (const name of Object.keys(WORKERS)) bundles[name] = bundle(name);
  for (const [k, b] of Object.entries(bundles)) log(`  ${k}: ${b.uploadKiB} KiB, gzip ${b.gzipKiB} KiB`);
  if (ONLY_STARTUP) return startupOnly({ bundles, versions, host, started });

  // Keys and tokens.
  let t = performance.now();
  const rs = makeKey('RS256', 'bench-rs256');
  const es = makeKey('ES256', 'bench-es256');
  const jwks = { keys: [rs.publicJwk, es.publicJwk] };
  const hot = signJwt(rs);
  const sessions = signMany(rs, 32);
  const nConn = SETTINGS.connections.length;
  const per = SETTINGS.perCellTokens;
  const need = (kind) => SETTINGS.workloads.reduce((sum, w) => sum + (WORKLOADS[w]?.firstSeen?.[kind] ?? 0), 0);
  const rsPool = signMany(rs, Math.ceil(nConn * per * need('rs')) + 10);
  const esPool = signMany(es, Math.ceil(nConn * per * need('es')) + 10);
  const warmRs = signMany(rs, 400);
  const warmEs = signMany(es, 400);
  const invalid = invalidTokens({ rs, es, perKind: 40 });
  log(`bench: signed ${rsPool.length + warmRs.length + sessions.length + 1} RS256 and ${esPool.length + warmEs.length} ES256 tokens in ${round((performance.now() - t) / 1000, 1)}s`);

  const servers = await startServers(jwks);
  const cleanups = [() => servers.close()];
  const results = { settings: SETTINGS, machine: host, versions, date: new Date().toISOString(), command: `${Object.keys(process.env).filter((k) => k.startsWith('BENCH_')).sort().map((k) => `${k}=${process.env[k]} `).join('')}npm run bench`, bundles: {}, targets: {}, cells: [] };
  for (const [k, b] of Object.entries(bundles)) results.bundles[k] = { uploadKiB: b.uploadKiB, gzipKiB: b.gzipKiB };

  try {
    // Targets.
    const gatewayBindings = gatewayBindingsFor(servers, jwks);
    const remote = { ...gatewayBindings, JWKS_URL: servers.jwks };
    delete remote.JWT_JWKS;
    const TARGETS = [
      { id: 'floor', label: 'origin alone (floor)', baseline: true },
      { id: 'bare', label: 'bare forwarding Worker', baseline: true, bundle: 'bare', bindings: { ORIGIN_URL: servers.origin } },
      { id: 'edge-auth-proxy', label: 'edge-auth-proxy (Rust/wasm)', bundle: 'edge-auth-proxy', bindings: gatewayBindings, kv: true },
      { id: 'jose', label: 'jose Worker (TypeScript)', bundle: 'jose-worker', bindings: gatewayBindings, kv: true },
      { id: 'jose-cache', label: 'jose Worker + verified-token cache', bundle: 'jose-worker', bindings: { ...gatewayBindings, VERIFIED_CACHE: 'on' }, kv: true },
      ...(SETTINGS.policy
        ? [{ id: 'edge-auth-proxy-policy', label: 'edge-auth-proxy + a route policy', bundle: 'edge-auth-proxy', bindings: { ...gatewayBindings, ROUTES: POLICY_ROUTES }, kv: true }]
        : []),
      ...(SETTINGS.assertion
        ? ['es256', 'ed25519'].map((k) => ({
            id: `edge-auth-proxy-assert-${k}`,
            label: `edge-auth-proxy + gateway assertion (${k === 'es256' ? 'ES256' : 'Ed25519'})`,
            bundle: 'edge-auth-proxy',
            bindings: { ...gatewayBindings, ...assertionBindings(k) },
            kv: true,
          }))
        : []),
      ...(SETTINGS.jwksUrl
        ? [
            { id: 'edge-auth-proxy-jwks-url', label: 'edge-auth-proxy, JWKS_URL', bundle: 'edge-auth-proxy', bindings: remote, kv: true, optional: true },
            { id: 'jose-jwks-url', label: 'jose Worker, createRemoteJWKSet', bundle: 'jose-worker', bindings: remote, kv: true },
          ]
        : []),
    ].filter((tg) => !process.env.BENCH_TARGETS || list(process.env.BENCH_TARGETS).includes(tg.id));

    const live = [];
    for (const tg of TARGETS) {
      const info = { label: tg.label, baseline: !!tg.baseline, bundle: tg.bundle ?? null };
      results.targets[tg.id] = info;
      if (!tg.bundle) {
        live.push({ ...tg, url: servers.origin, pid: null });
        continue;
      }
      log(`bench: starting ${tg.id} (${SETTINGS.startups}×, spawn → first 200)`);
      let started;
      try {
        started = await startMeasured({ id: tg.id, outdir: bundles[tg.bundle].outdir, bindings: tg.bindings, kv: tg.kv }, SETTINGS.startups, hot);
      } catch (err) {
        if (!tg.optional) throw err;
        info.skipped = `never answered 200: ${String(err.message).split('\n')[0]}`;
        log(`  skipped: ${info.skipped}`);
        continue;
      }
      info.startup = started.startup;
      log(`  ready ${started.startup.readyMs} ms, first 200 ${started.startup.first200Ms} ms (median)`);
      const w = started.worker;
      cleanups.push(() => w.dispose());
      live.push({ ...tg, url: w.url, pid: w.pid });
    }

    // Correctness, before any timing: the same answers from both Workers.
    for (const tg of live.filter((x) => !x.baseline)) {
      const s0 = await servers.stats();
      const ok = await call(tg.url, signJwt(es));
      const s1 = await servers.stats();
      const forged = await call(tg.url, invalid.tokens.find((x) => x.kind === 'bad-signature').jwt);
      const none = await call(tg.url, null);
      const checks = {
        validEs256: ok.status,
        originGotCredentials: s1.origin.withCredentials - s0.origin.withCredentials === 1,
        forged: forged.status,
        forgedType: forged.headers.get('content-type'),
        forgedChallenge: forged.headers.get('www-authenticate'),
        missing: none.status,
        missingChallenge: none.headers.get('www-authenticate'),
      };
      await Promise.all([ok.arrayBuffer(), forged.arrayBuffer(), none.arrayBuffer()]);
      results.targets[tg.id].checks = checks;
      if (checks.validEs256 !== 200 || !checks.originGotCredentials || checks.forged !== 401 || checks.missing !== 401 || checks.forgedType !== 'application/problem+json') {
        throw new Error(`${tg.id} does not do the job: ${JSON.stringify(checks)}`);
      }
    }

    // Token streams. Each Worker target has its own cursor into the shared pools: a token is
    // "first-seen" for the Worker instance that receives it.
    const cursors = new Map(live.map((x) => [x.id, { rs: 0, es: 0, cellRs: 0, cellEs: 0 }]));
    const stream = (targetId, workloadId) => {
      const cur = cursors.get(targetId);
      let i = 0;
      const takeRs = () => ({ jwt: rsPool[cur.rs++ % rsPool.length], expect: 200 });
      const takeEs = () => ({ jwt: esPool[cur.es++ % esPool.length], expect: 200 });
      const bad = () => ({ jwt: invalid.tokens[i % invalid.tokens.length].jwt, expect: 401 });
      const early = invalid.tokens.filter((x) => EARLY.has(x.kind));
      switch (workloadId) {
        case 'baseline':
        case 'hot':
          return () => ({ jwt: hot, expect: 200 });
        case 'first-rs256':
          return takeRs;
        case 'first-es256':
          return takeEs;
        case 'invalid':
          return () => {
            const x = bad();
            i++;
            return x;
          };
        case 'reject-early':
          return () => ({ jwt: early[i++ % early.length].jwt, expect: 401 });
        case 'mixed':
          return () => {
            const slot = MIXED[i % MIXED.length];
            const x = slot === 'session' ? { jwt: sessions[i % sessions.length], expect: 200 } : slot === 'rs' ? takeRs() : slot === 'es' ? takeEs() : bad();
            i++;
            return x;
          };
        case 'warmup':
          return () => {
            const slot = MIXED[i % MIXED.length];
            const x =
              slot === 'session' ? { jwt: sessions[i % sessions.length], expect: 200 } : slot === 'rs' ? { jwt: warmRs[i % warmRs.length], expect: 200 } : slot === 'es' ? { jwt: warmEs[i % warmEs.length], expect: 200 } : bad();
            i++;
            return x;
          };
        default:
          throw new Error(`unknown workload ${workloadId}`);
      }
    };
    // Each first-seen cell starts at its own slice of the pool, so no cell reuses a token.
    const alignCursor = (targetId, workloadId) => {
      const cur = cursors.get(targetId);
      const fs = WORKLOADS[workloadId]?.firstSeen;
      if (fs?.rs) cur.rs = cur.cellRs;
      if (fs?.es) cur.es = cur.cellEs;
      if (fs?.rs) cur.cellRs += Math.ceil(per * fs.rs);
      if (fs?.es) cur.cellEs += Math.ceil(per * fs.es);
      return fs ? per : undefined;
    };

    // Warm-up: JIT, connection pools, the access token in memory.
    for (const tg of live.filter((x) => !x.baseline || x.id === 'bare')) {
      await runCell({ target: tg, workloadId: 'warmup', connections: 8, next: stream(tg.id, tg.baseline ? 'baseline' : 'warmup'), durationS: SETTINGS.warmupS, servers });
    }

    // The matrix, interleaved so that drift in the machine's load spreads over every target.
    const workers = live.filter((x) => !x.baseline);
    const baselines = live.filter((x) => x.baseline);
    let cellNo = 0;
    const total = SETTINGS.connections.length * (baselines.length + workers.length * SETTINGS.workloads.length);
    const show = (c) =>
      log(
        `  [${String(++cellNo).padStart(3)}/${total}] c=${String(c.connections).padEnd(2)} ${c.workload.padEnd(11)} ${c.target.padEnd(16)} ${String(c.rps).padStart(8)} rps  p50 ${String(c.latencyMs.p50).padStart(7)} ms  p99 ${String(c.latencyMs.p99).padStart(7)} ms  cpu ${String(c.workerCpuUsPerRequest ?? '-').padStart(6)} µs/req  errors ${c.errors}`,
      );
    for (const connections of SETTINGS.connections) {
      for (const tg of baselines) {
        const cell = await runCell({ target: tg, workloadId: 'baseline', connections, next: stream(tg.id, 'baseline'), durationS: SETTINGS.durationS, servers });
        results.cells.push(cell);
        show(cell);
      }
      for (const [wi, workloadId] of SETTINGS.workloads.entries()) {
        // Rotate the order of the Workers from one workload to the next.
        const order = workers.map((_, k) => workers[(k + wi) % workers.length]);
        for (const tg of order) {
          const cap = alignCursor(tg.id, workloadId);
          const cell = await runCell({ target: tg, workloadId, connections, next: stream(tg.id, workloadId), cap, durationS: SETTINGS.durationS, servers });
          results.cells.push(cell);
          show(cell);
        }
      }
    }
  } finally {
    for (const f of cleanups.reverse()) await Promise.resolve(f()).catch(() => {});
  }

  results.workloads = Object.fromEntries(SETTINGS.workloads.map((w) => [w, WORKLOADS[w].label]));
  results.summary = summarize(results);
  results.wallClockS = round((Date.now() - started) / 1000, 1);
  writeFileSync(`${STEM}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${STEM}.svg`, renderChart(results));
  writeFileSync(`${STEM}.md`, renderMarkdown(results, path.basename(STEM)));
  log(`bench: done in ${results.wallClockS}s; wrote ${path.relative(process.cwd(), STEM)}.{json,svg,md}`);
  process.stdout.write(renderMarkdown(results, path.basename(STEM)));
}

/** `node bench/run.mjs --render results.json`: the chart and the tables again, from a run's JSON. */
function render(file) {
  const results = JSON.parse(readFileSync(file, 'utf8'));
  results.summary = summarize(results);
  const stem = file.replace(/\.json$/, '');
  writeFileSync(`${stem}.svg`, renderChart(results));
  writeFileSync(`${stem}.md`, renderMarkdown(results, path.basename(stem)));
  log(`bench: wrote ${stem}.{svg,md}`);
}

/**
 * `node bench/run.mjs --page [workerd.json miniflare.json]`: the charts and tables of both runs
 * again (results/workerd-latest.json and results/latest.json by default), and the one screen at
 * the top of bench/README.md rewritten from them (bench/lib/page.mjs).
 */
function page(files) {
  const [workerdFile, miniflareFile] = files.length === 2 ? files : [path.join(BENCH, 'results/workerd-latest.json'), path.join(BENCH, 'results/latest.json')];
  for (const f of [workerdFile, miniflareFile]) render(f);
  const read = (f) => {
    const results = JSON.parse(readFileSync(f, 'utf8'));
    results.summary = summarize(results);
    return results;
  };
  const readme = path.join(BENCH, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const from = text.indexOf(PAGE_BEGIN);
  const to = text.indexOf(PAGE_END);
  if (from < 0 || to < from) throw new Error(`bench/README.md has no block between ${PAGE_BEGIN} and ${PAGE_END}`);
  const stem = (s) => path.join(BENCH, 'results', `${s}.json`);
  const before = { workerd: read(stem(BEFORE.workerd)), miniflare: read(stem(BEFORE.miniflare)) };
  const block = renderPage({ workerd: read(workerdFile), miniflare: read(miniflareFile), before });
  writeFileSync(readme, `${text.slice(0, from)}${block.trimEnd()}${text.slice(to + PAGE_END.length)}`);
  log('bench: wrote the page block of bench/README.md');
}

const renderAt = process.argv.indexOf('--render');
const pageAt = process.argv.indexOf('--page');
const job = renderAt > 0 ? () => render(process.argv[renderAt + 1]) : pageAt > 0 ? () => page(process.argv.slice(pageAt + 1)) : main;
Promise.resolve().then(job).then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
