// What checking a customer JWT costs in the built Worker, WebCrypto + verified-token memory (the
// release build) against pure-Rust verification of every token (a `baseline-verify` build),
// in the same workerd, from the OS's CPU accounting of each workerd process.
//
//   node bench/verify-cost.mjs            # builds both variants (about 1 minute), then measures
//   VERIFY_COST_SKIP_BUILD=1 node bench/verify-cost.mjs   # reuse bench/.out/verify-*
//   VERIFY_COST_REQUESTS=5000 ...         # requests per workload (default 3000)
//
// The cost of verification is a workload's CPU per request minus that of a control request on
// a public route of the same Worker (routing, access token, forwarding, logging: everything but
// the JWT), measured just before and just after it, so the Worker's plumbing and Miniflare's
// entry Worker cancel out. Tokens are pre-signed before anything is timed.
// Writes bench/results/verify-cost.json and prints a table.

import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Miniflare } from 'miniflare';

import { cpuMicros, machine, workerdPids } from './lib/proc.mjs';
import { AUDIENCE, ISSUER, makeKey, signJwt, signMany } from './lib/tokens.mjs';
import { startOrigin, startTokenEndpoint } from '../tests/e2e/servers.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const OUT = path.join(ROOT, 'bench/.out');
const N = Number(process.env.VERIFY_COST_REQUESTS ?? 3000);
const LANES = 8;
const VARIANTS = [
  { name: 'webcrypto', label: 'release: WebCrypto + verified-token memory', features: [] },
  { name: 'baseline', label: 'baseline: pure-Rust verification, no memory', features: ['--features', 'baseline-verify'] },
];

function build() {
  // The release build last, so that build/ is left as everything else expects it.
  for (const v of [...VARIANTS].reverse()) {
    console.error(`building ${v.name} ...`);
    execFileSync('bash', ['scripts/build.sh', ...v.features], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const dir = path.join(OUT, `verify-${v.name}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    cpSync(path.join(ROOT, 'build'), dir, { recursive: true });
  }
}

async function startVariant(v, bindings) {
  const before = workerdPids();
  const dir = path.join(OUT, `verify-${v.name}`);
  const mf = new Miniflare({
    modules: true,
    scriptPath: path.join(dir, 'index.js'),
    modulesRules: [{ type: 'CompiledWasm', include: ['**/*.wasm'] }],
    compatibilityDate: '2025-01-01',
    kvNamespaces: ['TOKEN_CACHE'],
    bindings,
    cf: false,
    handleRuntimeStdio(stdout, stderr) {
      stdout.resume();
      stderr.resume();
    },
  });
  const url = await mf.ready;
  const pid = [...workerdPids()].find((p) => !before.has(p));
  if (!pid) throw new Error('could not find the workerd process');
  return { mf, url: String(url), pid };
}

/** Sends `tokens.length` requests over `LANES` parallel lanes; returns workerd CPU µs per request. */
async function measure(target, pathName, tokens) {
  let next = 0;
  let errors = 0;
  const lane = async () => {
    while (next < tokens.length) {
      const jwt = tokens[next++];
      const headers = jwt ? { 'customer-auth': `JWT ${jwt}` } : {};
      const res = await fetch(new URL(pathName, target.url), { headers });
      await res.arrayBuffer();
      if (res.status !== 200) errors++;
    }
  };
  const cpu0 = cpuMicros(target.pid);
  const t0 = performance.now();
  await Promise.all(Array.from({ length: LANES }, lane));
  const wall = performance.now() - t0;
  const cpu = cpuMicros(target.pid) - cpu0;
  return { cpuPerRequestUs: cpu / tokens.length, rps: (tokens.length / wall) * 1000, errors };
}

async function main() {
  if (!process.env.VERIFY_COST_SKIP_BUILD) build();
  const [origin, token] = await Promise.all([startOrigin(), startTokenEndpoint({ clientId: 'bench', clientSecret: 'bench-secret', expiresIn: 86400 })]);
  const rs = makeKey('RS256', 'rs-1');
  const es = makeKey('ES256', 'es-1');
  const bindings = {
    ORIGIN_URL: origin.url,
    TOKEN_URL: token.url,
    CLIENT_ID: 'bench',
    CLIENT_SECRET: 'bench-secret',
    API_KEY: 'bench-api-key',
    JWT_ALGORITHMS: 'RS256,ES256',
    JWT_JWKS: JSON.stringify({ keys: [rs.publicJwk, es.publicJwk] }),
    JWT_ISSUER: ISSUER,
    JWT_AUDIENCE: AUDIENCE,
    ROUTES: JSON.stringify([
      { prefix: '/public', auth: 'public' },
      { prefix: '/account', auth: 'jwt' },
    ]),
  };
  console.error(`signing ${2 * N} tokens ...`);
  const repeated = signJwt(rs);
  const workloads = {
    control: { path: '/public/profile', tokens: () => new Array(N).fill(null) },
    'first-seen RS256': { path: '/account/profile', tokens: () => signMany(rs, N) },
    'first-seen ES256': { path: '/account/profile', tokens: () => signMany(es, N) },
    'repeated RS256': { path: '/account/profile', tokens: () => new Array(N).fill(repeated) },
  };
  const pools = Object.fromEntries(Object.entries(workloads).map(([k, w]) => [k, { ...w, pool: w.tokens() }]));

  const results = {};
  for (const v of VARIANTS) {
    const target = await startVariant(v, bindings);
    try {
      // Warm-up: the access token, the key imports, the JIT.
      await measure(target, '/account/profile', signMany(rs, 100).concat(signMany(es, 100)));
      await measure(target, '/public/profile', new Array(100).fill(null));
      // The control runs between every two workloads, and each workload is compared with the
      // mean of the controls around it, so that drift (other load on the machine, the JIT)
      // does not land on one side only.
      results[v.name] = {};
      const controls = [await measure(target, pools.control.path, pools.control.pool)];
      for (const [name, w] of Object.entries(pools).filter(([n]) => n !== 'control')) {
        // Tokens are new to each variant: each runs in its own workerd.
        results[v.name][name] = await measure(target, w.path, w.pool);
        const after = await measure(target, pools.control.path, pools.control.pool);
        results[v.name][name].controlCpuUs = (controls.at(-1).cpuPerRequestUs + after.cpuPerRequestUs) / 2;
        controls.push(after);
      }
      results[v.name].control = {
        cpuPerRequestUs: controls.reduce((a, c) => a + c.cpuPerRequestUs, 0) / controls.length,
        rps: controls.reduce((a, c) => a + c.rps, 0) / controls.length,
        errors: controls.reduce((a, c) => a + c.errors, 0),
      };
    } finally {
      await target.mf.dispose();
    }
  }
  await Promise.all([origin.close(), token.close()]);

  const rows = [];
  for (const name of Object.keys(workloads).filter((n) => n !== 'control')) {
    const cost = (v) => results[v][name].cpuPerRequestUs - results[v][name].controlCpuUs;
    rows.push({
      workload: name,
      webcryptoCpuUs: results.webcrypto[name].cpuPerRequestUs,
      baselineCpuUs: results.baseline[name].cpuPerRequestUs,
      webcryptoVerifyUs: cost('webcrypto'),
      baselineVerifyUs: cost('baseline'),
      verifyCostRatio: cost('webcrypto') / cost('baseline'),
      requestCpuRatio: results.webcrypto[name].cpuPerRequestUs / results.baseline[name].cpuPerRequestUs,
    });
  }
  const report = {
    date: new Date().toISOString(),
    command: 'node bench/verify-cost.mjs',
    requestsPerWorkload: N,
    lanes: LANES,
    machine: machine(),
    variants: Object.fromEntries(VARIANTS.map((v) => [v.name, v.label])),
    results,
    rows,
  };
  mkdirSync(path.join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(path.join(ROOT, 'bench/results/verify-cost.json'), `${JSON.stringify(report, null, 2)}\n`);

  const f = (x) => x.toFixed(0).padStart(6);
  console.log(`control (public route, no JWT): webcrypto ${f(results.webcrypto.control.cpuPerRequestUs)} µs, baseline ${f(results.baseline.control.cpuPerRequestUs)} µs CPU per request`);
  console.log('| workload | verification µs: WebCrypto/memory | pure Rust | ratio | whole request CPU ratio |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.workload} | ${f(r.webcryptoVerifyUs)} | ${f(r.baselineVerifyUs)} | ${r.verifyCostRatio.toFixed(2)} | ${r.requestCpuRatio.toFixed(2)} |`);
  }
  const errors = Object.values(results).flatMap((w) => Object.values(w)).reduce((a, r) => a + r.errors, 0);
  if (errors) {
    console.error(`${errors} requests did not get 200`);
    process.exitCode = 1;
  }
}

await main();
