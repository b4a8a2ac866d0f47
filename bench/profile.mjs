// A/B and profiling helper for the gateway's own overhead (not part of `npm run bench`).
//
//   node bench/profile.mjs [dir ...]          # CPU per request of each build dir, interleaved
//   PROFILE_CPUPROFILE=/tmp/p.cpuprofile node bench/profile.mjs build   # + a V8 CPU profile
//
// Each argument is a directory holding a build (`index.js`, `index_bg.wasm`, as scripts/build.sh writes them);
// default `build`. `bare` means bench/workers/bare. A `+policy` suffix (`build+policy`) runs that
// build with one realistic route policy (issuers, audiences, scopes, one claim, one
// claims_to_headers) on the measured route; every other target's route carries none, so
// `node bench/profile.mjs build build+policy` measures what the policy check costs. A `+types`
// suffix sets JWT_TYPES (`at+jwt,JWT`: the benchmark's tokens are typed `JWT`, so the list is
// walked to its second entry) on the measured provider, so `node bench/profile.mjs build
// build+types` measures what the token type check costs (it runs where a token is verified:
// the `first-*` workloads see it on every request, `hot` only on the warm-up). A `+metrics`
// suffix binds METRICS to Miniflare's Analytics Engine dataset (whose writeDataPoint drops the
// point, after a call into another Worker), or in plain workerd (PROFILE_RUNTIME=workerd) to a
// dataset of the benchmark's own in the same isolate whose writeDataPoint keeps nothing,
// behind a small entry module (bench/lib/workerd.mjs): what is measured is the gateway's side,
// building and handing over each point. `+wrapped` is that entry module without METRICS, so
// `PROFILE_RUNTIME=workerd node bench/profile.mjs build+wrapped build+metrics` measures what
// writing metrics costs. A
// `+assert-es256` or `+assert-ed25519` suffix runs the build with the gateway assertion on
// (GATEWAY_ASSERTION_HEADER, GATEWAY_SIGNING_KEY with that test key): `node bench/profile.mjs
// build build+assert-es256 build+assert-ed25519` measures what signing it costs. A `+bind`
// suffix binds the measured path's second segment (`getprofile`) to the token's `accounts`
// claim (an array of two strings, the second matching; every target's token carries it):
// `node bench/profile.mjs build build+bind` measures what `bind` costs. A `+dpop` suffix sends,
// instead of the plain token, a token bound to a client key (`cnf.jkt`) as `Authorization: DPoP`
// with a fresh ES256 proof per request (a new `jti` each: every proof is checked in full and
// remembered); `+dpop-guard` does the same with DPOP_REPLAY bound to the build's ReplayGuard
// Durable Object (Miniflare only), so `node bench/profile.mjs build build+dpop build+dpop-guard`
// measures what a DPoP proof costs and what the replay guard's round trip adds. The subject-wide
// cut-off (docs/configuration.md, "Revocation") runs on every token with `iss` and `sub`, every
// target's included: `+nosub` sends the hot token without `sub`, so the check returns before
// hashing, and `+cutoff` names a target that sends it with `sub` (the check runs: a SHA-256 of
// `iss` and `sub` and the isolate's memory of that subject, one KV read per minute), so
// `node bench/profile.mjs build+nosub build+cutoff` measures what the check costs (hot workload
// only). Every target runs in its own workerd
// (Miniflare), in front of the same loopback servers as bench/run.mjs, and is measured in
// rounds, one target after another, so that the machine's noise hits them alike. The number to
// read is workerd CPU µs per request (from /proc), median over rounds.
//
// Environment: PROFILE_RUNTIME (miniflare | workerd, default miniflare; workerd: each target in
// plain `workerd serve` as `BENCH_RUNTIME=workerd` runs them, see lib/workerd.mjs, without
// Miniflare's entry Worker and its 300 µs per request),
// PROFILE_WORKLOAD (hot | first-rs256 | first-es256 | reject-early | public, default hot; public: the path is
// a public route and no JWT is sent), PROFILE_EXTRA_HEADERS (n: each request also carries n
// headers of about 40 bytes, as a browser's would; default 0), PROFILE_SECONDS (per round
// per target, default 3), PROFILE_ROUNDS (default 5), PROFILE_CONNECTIONS (default 8),
// PROFILE_CPUPROFILE (file: profile the first target for PROFILE_SECONDS through workerd's
// inspector and write a .cpuprofile that Chrome DevTools opens; a summary by self time is
// printed).

import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import autocannon from 'autocannon';
import { Miniflare } from 'miniflare';
import WebSocket from 'ws';

import { cpuMicros, workerdPids } from './lib/proc.mjs';
import { startWorkerd } from './lib/workerd.mjs';
import { AUDIENCE, ISSUER, invalidTokens, makeKey, signJwt, signMany } from './lib/tokens.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(BENCH, '..');
const WORKLOAD = process.env.PROFILE_WORKLOAD ?? 'hot';
const SECONDS = Number(process.env.PROFILE_SECONDS ?? 3);
const ROUNDS = Number(process.env.PROFILE_ROUNDS ?? 5);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 8);
const CPUPROFILE = process.env.PROFILE_CPUPROFILE;
const RUNTIME = process.env.PROFILE_RUNTIME ?? 'miniflare';
const EXTRA = Object.fromEntries(Array.from({ length: Number(process.env.PROFILE_EXTRA_HEADERS ?? 0) }, (_, i) => [`x-bench-${i}`, `value-${i}-${'v'.repeat(24)}`]));
const PATH = '/account/getprofile';
const log = (...a) => console.error(...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The gateway assertion's settings with the test key `es256` or `ed25519` (tests/fixtures). */
function assertionBindings(key) {
  if (!['es256', 'ed25519'].includes(key)) throw new Error(`+assert-${key}: the keys are es256 and ed25519`);
  const keys = JSON.parse(readFileSync(path.join(ROOT, 'tests', 'fixtures', 'signing-keys.json'), 'utf8'));
  return { GATEWAY_ASSERTION_HEADER: 'x-gateway-assertion', GATEWAY_SIGNING_KEY: JSON.stringify(keys[key === 'es256' ? 'es256_a' : 'ed25519']) };
}

async function startServers(jwks) {
  const child = fork(path.join(BENCH, 'lib', 'servers.mjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const urls = await new Promise((resolve) => {
    child.on('message', (m) => m.ready && resolve(m.ready));
    child.send({ init: { clientId: 'bench-client', clientSecret: 'bench-client-secret-9d2Lq', apiKey: 'bench-api-key-Vx81', jwks } });
  });
  return { ...urls, close: () => (child.disconnect(), child.kill()) };
}

let nextInspector = 9400;
async function startWorker(dir, bindings, inspect, { metrics = false, guard = false, wrapped = false } = {}) {
  if (RUNTIME === 'workerd') {
    if (guard) throw new Error('+dpop-guard: PROFILE_RUNTIME=workerd binds no Durable Object here');
    const inspectorPort = inspect ? nextInspector++ : undefined;
    const wrap = metrics || wrapped ? { metrics } : undefined;
    const w = await startWorkerd({ outdir: dir, bindings, kv: true, inspectorPort, wrap });
    return { url: w.url, pid: w.pid, mf: w, inspectorPort };
  }
  const before = workerdPids();
  const inspectorPort = inspect ? nextInspector++ : undefined;
  const mf = new Miniflare({
    name: 'target',
    modules: true,
    scriptPath: path.join(dir, 'index.js'),
    modulesRoot: dir,
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2026-04-01',
    kvNamespaces: ['TOKEN_CACHE'],
    bindings,
    ...(metrics ? { analyticsEngineDatasets: { METRICS: { dataset: 'bench' } } } : {}),
    ...(guard ? { durableObjects: { DPOP_REPLAY: { className: 'ReplayGuard' } } } : {}),
    cf: false,
    host: '127.0.0.1',
    port: 0,
    ...(inspectorPort ? { inspectorPort } : {}),
    handleRuntimeStdio(out, err) {
      out.resume();
      err.resume();
    },
  });
  const url = new URL(String(await mf.ready)).origin;
  const pid = [...workerdPids()].find((p) => !before.has(p));
  return { mf, url, pid, inspectorPort };
}

async function load(url, next, seconds) {
  let n = 0;
  const statuses = {};
  await new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        url,
        connections: CONNECTIONS,
        duration: seconds,
        requests: [
          {
            method: 'GET',
            path: PATH,
            setupRequest(req) {
              const jwt = next();
              // A string is a customer JWT; an object, the headers to send (a DPoP token and proof).
              const auth = typeof jwt === 'object' ? jwt : jwt ? { 'customer-auth': `JWT ${jwt}` } : {};
              return { ...req, headers: { accept: 'application/json', ...EXTRA, ...auth } };
            },
            onResponse(status) {
              statuses[status] = (statuses[status] ?? 0) + 1;
            },
          },
        ],
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    inst.on('response', () => n++);
  });
  return { n, statuses };
}

async function measure(target, next) {
  const c0 = cpuMicros(target.pid);
  const t0 = performance.now();
  const { n, statuses } = await load(target.url, next, SECONDS);
  const wall = (performance.now() - t0) / 1000;
  await sleep(200);
  const us = (cpuMicros(target.pid) - c0) / n;
  return { us, rps: n / wall, statuses };
}

/** Chrome DevTools protocol over workerd's inspector: Profiler.start, load, Profiler.stop. */
async function cpuProfile(target, next, file) {
  const list = await (await fetch(`http://127.0.0.1:${target.inspectorPort}/json`)).json();
  const entry = list.find((x) => x.title?.includes('target')) ?? list[0];
  const wsUrl = entry.webSocketDebuggerUrl ?? `ws://127.0.0.1:${target.inspectorPort}/${entry.id}`;
  const ws = new WebSocket(wsUrl);
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  let id = 0;
  const pending = new Map();
  ws.on('message', (d) => {
    const m = JSON.parse(String(d));
    if (m.id && pending.has(m.id)) pending.get(m.id)(m), pending.delete(m.id);
  });
  const send = (method, params = {}) =>
    new Promise((r) => {
      const k = ++id;
      pending.set(k, r);
      ws.send(JSON.stringify({ id: k, method, params }));
    });
  await send('Profiler.enable');
  await send('Profiler.setSamplingInterval', { interval: 50 });
  await send('Profiler.start');
  const { n } = await load(target.url, next, SECONDS);
  const { result } = await send('Profiler.stop');
  ws.close();
  writeFileSync(file, JSON.stringify(result.profile));
  summarize(result.profile, n);
}

function summarize(profile, requests) {
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const key = `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url) : ''}:${f.lineNumber}`;
    self.set(key, (self.get(key) ?? 0) + (dt[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const busy = [...self.entries()].filter(([k]) => !k.startsWith('(idle)')).reduce((a, [, v]) => a + v, 0);
  log(`profile: ${requests} requests, ${(total / 1e3).toFixed(0)} ms sampled, ${(busy / requests).toFixed(1)} µs JS/wasm-thread busy per request`);
  for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40)) {
    log(`  ${(v / requests).toFixed(1).padStart(7)} µs/req  ${((100 * v) / total).toFixed(1).padStart(5)}%  ${k}`);
  }
}

async function main() {
  const dirs = process.argv.slice(2).length ? process.argv.slice(2) : ['build'];
  const rs = makeKey('RS256', 'bench-rs256');
  const es = makeKey('ES256', 'bench-es256');
  const jwks = { keys: [rs.publicJwk, es.publicJwk] };
  // Claims the policy below accepts; carried by every target's token so that only the check
  // differs.
  const hot = signJwt(rs, { claims: { scope: 'openid profile:read', tier: 'gold', org: { id: 'org-42' }, accounts: ['acct-0001', 'getprofile'] } });
  const early = invalidTokens({ rs, es, perKind: 10 }).tokens.filter((x) => ['malformed', 'missing', 'alg-none', 'unknown-kid'].includes(x.kind));
  let i = 0;
  // first-rs256 / first-es256: every request a token no target has seen (PROFILE_TOKENS of
  // them, default 40000, signed before the run; a target is sent each at most once).
  const first = WORKLOAD.startsWith('first-') ? signMany(WORKLOAD === 'first-es256' ? es : rs, Number(process.env.PROFILE_TOKENS ?? 40000)) : [];
  const fresh = () => {
    if (i >= first.length) throw new Error('PROFILE_TOKENS exhausted: raise it');
    return first[i++];
  };
  // +nosub: the same claims without `sub` (no subject: the cut-off check is skipped).
  const hotNoSub = signJwt(rs, { claims: { scope: 'openid profile:read', tier: 'gold', org: { id: 'org-42' }, accounts: ['acct-0001', 'getprofile'], sub: undefined } });
  const next = WORKLOAD === 'reject-early' ? () => early[i++ % early.length].jwt : WORKLOAD === 'public' ? () => undefined : first.length ? fresh : () => hot;

  // +dpop: a client key, a token bound to it, and a fresh proof per request for `url`.
  const client = makeKey('ES256', 'dpop-client');
  const { kid: _k, alg: _a, use: _u, ...clientJwk } = client.publicJwk;
  const jkt = createHash('sha256').update(JSON.stringify({ crv: clientJwk.crv, kty: clientJwk.kty, x: clientJwk.x, y: clientJwk.y })).digest('base64url');
  const bound = signJwt(rs, { claims: { scope: 'openid profile:read', tier: 'gold', org: { id: 'org-42' }, accounts: ['acct-0001', 'getprofile'], cnf: { jkt } } });
  const ath = createHash('sha256').update(bound).digest('base64url');
  const dpopFor = (url) => () => ({
    authorization: `DPoP ${bound}`,
    dpop: signJwt(client, { header: { typ: 'dpop+jwt', jwk: clientJwk, kid: undefined }, claims: { htm: 'GET', htu: url + PATH, ath } }),
  });

  const servers = await startServers(jwks);
  const bindings = {
    ORIGIN_URL: servers.origin,
    TOKEN_URL: `${servers.token}?grant_type=client_credentials`,
    CLIENT_ID: 'bench-client',
    CLIENT_SECRET: 'bench-client-secret-9d2Lq',
    API_KEY: 'bench-api-key-Vx81',
    JWT_ALGORITHMS: 'RS256,ES256',
    JWT_JWKS: JSON.stringify(jwks),
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
  };
  // The measured route; the ROUTES binding below is built from it for every target.
  const route = { prefix: '/account', methods: ['GET', 'POST'], ...(WORKLOAD === 'public' ? { auth: 'public' } : {}) };
  const policy = {
    issuers: [ISSUER],
    audiences: [AUDIENCE],
    scopes: ['profile:read'],
    claims: { tier: ['gold', 'platinum'] },
    claims_to_headers: { 'x-org-id': 'org.id' },
  };
  const targets = [];
  try {
    for (const [k, d] of dirs.entries()) {
      const bare = d === 'bare';
      const [name, ...suffixes] = d.split('+');
      const withPolicy = suffixes.includes('policy');
      const types = suffixes.includes('types') ? { JWT_TYPES: 'at+jwt,JWT' } : {};
      const assert = suffixes.find((s) => s.startsWith('assert-'));
      const signing = assert ? assertionBindings(assert.slice('assert-'.length)) : {};
      const dir = bare ? path.join(BENCH, 'workers', 'bare') : path.resolve(ROOT, name);
      const bind = suffixes.includes('bind') ? { bind: { path_segment: 2, claim: 'accounts' } } : {};
      const routes = JSON.stringify([{ ...route, ...(withPolicy ? policy : {}), ...bind }]);
      const guard = suffixes.includes('dpop-guard');
      const w = await startWorker(dir, bare ? { ORIGIN_URL: servers.origin } : { ...bindings, ...signing, ...types, ROUTES: routes }, CPUPROFILE && k === 0, { metrics: suffixes.includes('metrics'), guard, wrapped: suffixes.includes('wrapped') });
      const noSub = suffixes.includes('nosub');
      if (noSub && WORKLOAD !== 'hot') throw new Error('+nosub: hot workload only');
      const dpop = guard || suffixes.includes('dpop') ? dpopFor(w.url) : noSub ? () => ({ 'customer-auth': `JWT ${hotNoSub}` }) : undefined;
      targets.push({ name: d, ...w, dpop, samples: [] });
      const r = await fetch(w.url + PATH, { headers: dpop ? dpop() : { 'customer-auth': `JWT ${hot}` } });
      await r.arrayBuffer();
      if (r.status !== 200) throw new Error(`${d}: ${r.status}`);
      await load(w.url, bare ? () => hot : dpop ?? next, 1); // warm-up
    }
    if (CPUPROFILE) await cpuProfile(targets[0], targets[0].dpop ?? next, CPUPROFILE);
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        // The bare forwarder checks no token: it is not given the first-seen ones.
        const m = await measure(t, t.name === 'bare' ? () => hot : t.dpop ?? next);
        t.samples.push(m);
        log(`round ${round + 1} ${t.name}: ${m.us.toFixed(0)} µs/req, ${m.rps.toFixed(0)} rps ${JSON.stringify(m.statuses)}`);
      }
    }
    const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    log(`\n${WORKLOAD}, ${CONNECTIONS} connections, ${ROUNDS} rounds × ${SECONDS}s (median; min–max)`);
    for (const t of targets) {
      const us = t.samples.map((s) => s.us);
      const rps = t.samples.map((s) => s.rps);
      log(`  ${t.name.padEnd(30)} ${med(us).toFixed(0).padStart(5)} µs/req (${Math.min(...us).toFixed(0)}–${Math.max(...us).toFixed(0)})  ${med(rps).toFixed(0).padStart(6)} rps`);
    }
  } finally {
    for (const t of targets) await t.mf.dispose();
    servers.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
