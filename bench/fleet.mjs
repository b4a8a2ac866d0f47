// The fleet simulation (issue 12), re-runnable: N isolates of the BUILT Worker (Miniflare
// `workers`, each with its own TOKEN_CACHE namespace: the worst case of KV propagation, where no
// isolate sees another's writes), with and without the TokenCoordinator Durable Object, driven
// across all of them for several token lifetimes against the loopback origin and token endpoint
// of tests/e2e. Writes bench/results/fleet.json (quick runs: fleet-quick.json) and prints a table.
//
//   npm run build && npm run bench:fleet
//   BENCH_QUICK=1 npm run bench:fleet      # N = 1, 4; 10 s tokens; about two minutes
//
// Settings (environment): BENCH_FLEET_LIFETIME (token lifetime, s; 20), BENCH_FLEET_LIFETIMES
// (lifetimes per run; 2), BENCH_FLEET_RATE (requests per second per isolate; 4),
// BENCH_FLEET_SIZES (1,4,16), BENCH_FLEET_PHASES (calls,latency,outage), BENCH_FLEET_OUTAGES
// (token,jwks,introspection).
//
// Phases:
// 1. `calls`: for each N and with/without the coordinator, every isolate gets a request every
//    1000 / BENCH_FLEET_RATE ms for BENCH_FLEET_LIFETIMES token lifetimes of BENCH_FLEET_LIFETIME
//    seconds. Counts token-endpoint calls, responses by status, and the requests the isolates
//    made to the coordinator (from their log lines).
// 2. `latency`: what the coordinator adds to a cold request (an isolate with an empty memory and
//    KV whose token comes from the coordinator, against one that calls the endpoint itself) and
//    to a warm one (token in memory), from the request log's `token_ms` and the wall clock.
// 3. `outage`: with the largest N, one dependency down for one lifetime while requests keep
//    coming, then up again for one lifetime: the token endpoint (with and without the
//    coordinator), the key set (a key rotated in during the outage) and the introspection
//    endpoint (sessions never seen before). The table shows the 503s and 401s answered after the
//    dependency was back: there should be none.

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { CLIENT_ID, CLIENT_SECRET, ISSUER, ROOT, baseBindings, sleep, startStack, withJwt } from '../tests/e2e/harness.mjs';
import { startIntrospection } from '../tests/e2e/introspection.mjs';
import { jwks, makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from '../tests/e2e/servers.mjs';

const QUICK = process.env.BENCH_QUICK === '1';
const num = (name, dflt) => Number(process.env[name] ?? dflt);
const LIFETIME_S = num('BENCH_FLEET_LIFETIME', QUICK ? 10 : 20);
const LIFETIMES = num('BENCH_FLEET_LIFETIMES', QUICK ? 2 : 2);
const RATE = num('BENCH_FLEET_RATE', 4);
const SIZES = (process.env.BENCH_FLEET_SIZES ?? (QUICK ? '1,4' : '1,4,16')).split(',').map(Number);
// BENCH_FLEET_OUT: another results file (a run against another build, say).
const OUT = process.env.BENCH_FLEET_OUT
  ? path.resolve(process.env.BENCH_FLEET_OUT)
  : path.join(ROOT, 'bench/results', QUICK ? 'fleet-quick.json' : 'fleet.json');
// BENCH_FLEET_PHASES=latency,outage reruns some phases and keeps the others' results in OUT.
const PHASES = (process.env.BENCH_FLEET_PHASES ?? 'calls,latency,outage').split(',');
// The dependencies the outage phase takes down, one run each (the token endpoint twice: with
// and without the coordinator).
const OUTAGES = (process.env.BENCH_FLEET_OUTAGES ?? 'token,jwks,introspection').split(',');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : null;
};
const round = (x, d = 2) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

async function stack({ n, coordinator }) {
  const [origin, token, key] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expiresIn: LIFETIME_S }),
    makeKey('RS256'),
  ]);
  const fleet = (await startStack({ servers: false, size: n, coordinator, bindings: baseBindings({ origin, token, key }), verbose: false })).fleet;
  const jwt = await signJwt(key);
  let ids = 0;
  return {
    origin,
    token,
    fleet,
    n,
    async call(i) {
      const id = `fleet-${++ids}`;
      const t0 = performance.now();
      const res = await fleet.fetch(i, '/account/getprofile', { method: 'POST', headers: withJwt(jwt, { 'x-request-id': id }), body: '{}' });
      await res.arrayBuffer();
      return { status: res.status, retryAfter: res.headers.get('retry-after'), ms: performance.now() - t0, id };
    },
    /** Requests the isolates made to the coordinator, as their log lines tell. */
    asks() {
      const lines = fleet.jsonLogs();
      const foreground = lines.filter((l) => typeof l.request_id === 'string' && l.token_source === 'coordinator').length;
      const background = lines.filter((l) => l.event === 'token_refresh' && l.token_source === 'coordinator').length;
      const drops = lines.filter((l) => l.token_refresh === 'after_401').length;
      return foreground + background + drops;
    },
    async close() {
      await fleet.dispose();
      await Promise.all([origin.close(), token.close()]);
    },
  };
}

/** Every isolate gets a request every 1000 / RATE ms until `ms` have passed. */
async function drive(s, ms) {
  const begun = Date.now();
  const end = begun + ms;
  const statuses = {};
  let other = 0;
  let last503 = null;
  let last401 = null;
  const period = 1000 / RATE;
  await Promise.all(
    Array.from({ length: s.n }, async (_, i) => {
      // Spread the isolates' first requests over one period: not all in lockstep.
      await sleep((period * i) / s.n);
      while (Date.now() < end) {
        const started = Date.now();
        try {
          const r = await s.call(i);
          statuses[r.status] = (statuses[r.status] ?? 0) + 1;
          if (r.status === 503 && !r.retryAfter) other++;
          if (r.status === 503) last503 = Date.now() - begun;
          if (r.status === 401) last401 = Date.now() - begun;
        } catch {
          other++;
        }
        const wait = period - (Date.now() - started);
        if (wait > 0) await sleep(wait);
      }
    }),
  );
  return { statuses, malformed: other, last503, last401 };
}

function summarize(statuses, malformed) {
  const total = Object.values(statuses).reduce((a, b) => a + b, 0);
  const ok = statuses[200] ?? 0;
  const unavailable = statuses[503] ?? 0;
  const unauthorized = statuses[401] ?? 0;
  return {
    requests: total,
    ok,
    unavailable_503: unavailable,
    unauthorized_401: unauthorized,
    errors: total - ok - unavailable - unauthorized + malformed,
  };
}

async function callsPhase() {
  const rows = [];
  for (const n of SIZES) {
    for (const coordinator of [false, true]) {
      const s = await stack({ n, coordinator });
      try {
        const { statuses, malformed } = await drive(s, LIFETIMES * LIFETIME_S * 1000);
        // Background refreshes claimed by the last requests finish after them.
        await sleep(500);
        const calls = s.token.count;
        const asks = coordinator ? s.asks() : 0;
        const row = {
          n,
          coordinator,
          lifetimes: LIFETIMES,
          token_calls: calls,
          calls_per_lifetime: round(calls / LIFETIMES),
          distinct_tokens_at_origin: new Set(s.origin.requests.map((r) => r.headers.authorization)).size,
          coordinator_requests_per_isolate_per_lifetime: coordinator ? round(asks / n / LIFETIMES) : null,
          ...summarize(statuses, malformed),
        };
        rows.push(row);
        console.error(JSON.stringify(row));
      } finally {
        await s.close();
      }
    }
  }
  return rows;
}

async function latencyPhase() {
  const n = 8;
  const out = {};
  for (const coordinator of [false, true]) {
    const s = await stack({ n, coordinator });
    try {
      // Isolate 0's first request: cold everywhere (with the coordinator: it calls the endpoint).
      const first = await s.call(0);
      // Isolates 1..n-1: cold memory and KV; with the coordinator, its token is already there.
      const cold = [];
      for (let i = 1; i < n; i++) cold.push(await s.call(i));
      const warm = [];
      for (let k = 0; k < 400; k++) warm.push(await s.call(k % n));
      await s.fleet.waitForRequestLogs(1 + cold.length + warm.length);
      const logs = new Map(s.fleet.requestLogs().map((l) => [l.request_id, l]));
      const tokenMs = (rs) => rs.map((r) => logs.get(r.id)?.token_ms ?? 0);
      out[coordinator ? 'with' : 'without'] = {
        first_request_ms: round(first.ms, 1),
        cold_isolate_request_ms_median: round(median(cold.map((r) => r.ms)), 1),
        cold_isolate_token_ms_median: median(tokenMs(cold)),
        cold_isolate_token_source: [...new Set(cold.map((r) => logs.get(r.id)?.token_source))],
        warm_request_ms_median: round(median(warm.map((r) => r.ms)), 2),
        warm_token_ms_median: median(tokenMs(warm)),
        token_calls: s.token.count,
      };
      console.error(JSON.stringify({ latency: coordinator, ...out[coordinator ? 'with' : 'without'] }));
    } finally {
      await s.close();
    }
  }
  out.added_cold_ms = round(out.with.cold_isolate_request_ms_median - out.without.cold_isolate_request_ms_median, 1);
  out.added_warm_ms = round(out.with.warm_request_ms_median - out.without.warm_request_ms_median, 2);
  return out;
}

/**
 * One outage run: `n` isolates against a dependency that goes down for one lifetime and comes
 * back for one, requests kept coming at RATE per isolate throughout. `dependency`:
 * - `token`: the token endpoint drops every connection (isolates lose their token when it
 *   expires during the outage); with and without the coordinator;
 * - `jwks`: keys from `JWKS_URL`; the provider answers 503 and, as the outage begins, rotates in
 *   a new key; half the requests carry a token signed with that new key;
 * - `introspection`: an `opaque` route; every request carries a session never seen before, so
 *   each needs the endpoint, which drops every connection.
 * Counted per phase: answers by status, and 401s (a valid token refused: the gateway blaming
 * the caller for its own missing keys).
 */
async function outageRun(dependency, { n, coordinator }) {
  const [origin, token, key, rotated] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expiresIn: LIFETIME_S }),
    makeKey('RS256'),
    makeKey('RS256'),
  ]);
  const servers = [origin, token];
  let bindings = baseBindings({ origin, token, key });
  let setDown;
  let calls;
  let requestHeaders;
  try {
    if (dependency === 'token') {
      const jwt = await signJwt(key);
      requestHeaders = () => withJwt(jwt);
      setDown = (down) => token.setMode(down ? 'down' : 'ok');
      calls = () => token.count;
    } else if (dependency === 'jwks') {
      const provider = await startJwksServer(jwks(key), { cacheControl: 'max-age=600' });
      servers.push(provider);
      const { JWT_JWKS: _inline, ...rest } = bindings;
      bindings = { ...rest, JWKS_URL: provider.url };
      const [oldJwt, newJwt] = await Promise.all([signJwt(key), signJwt(rotated)]);
      let k = 0;
      let rotatedIn = false;
      requestHeaders = () => withJwt(rotatedIn && ++k % 2 ? newJwt : oldJwt);
      setDown = (down) => {
        // The rotation happens as the outage begins: the new key is published while nobody
        // can fetch it, and from then on half the tokens arriving are signed with it.
        if (down) {
          provider.setKeys(jwks(key, rotated));
          rotatedIn = true;
        }
        provider.setDown(down);
      };
      calls = () => provider.count;
    } else if (dependency === 'introspection') {
      const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
      servers.push(idp);
      bindings = { ...bindings, ROUTES: JSON.stringify([{ prefix: '/account', auth: 'opaque' }]), INTROSPECTION_URL: idp.url };
      requestHeaders = () => ({ 'customer-auth': `Session ${idp.login('fleet-customer')}` });
      setDown = (down) => idp.setMode(down ? 'down' : 'ok');
      calls = () => idp.count;
    } else {
      throw new Error(`unknown outage dependency ${dependency}`);
    }
  } catch (err) {
    await Promise.all(servers.map((x) => x.close()));
    throw err;
  }
  const fleet = (await startStack({ servers: false, size: n, coordinator, bindings, verbose: false })).fleet;
  const s = {
    n,
    async call(i) {
      const res = await fleet.fetch(i, '/account/getprofile', { method: 'POST', headers: requestHeaders(), body: '{}' });
      await res.arrayBuffer();
      return { status: res.status, retryAfter: res.headers.get('retry-after') };
    },
  };
  try {
    // Warm: every isolate holds a token and, where there is one, the key set.
    await drive(s, 2_000);
    const before = calls();
    setDown(true);
    const down = await drive(s, LIFETIME_S * 1000);
    const duringOutage = calls() - before;
    setDown(false);
    const afterDown = calls();
    const up = await drive(s, LIFETIME_S * 1000);
    const row = {
      dependency,
      n,
      coordinator,
      outage_s: LIFETIME_S,
      calls_during_outage: duringOutage,
      calls_after_recovery: calls() - afterDown,
      during_outage: summarize(down.statuses, down.malformed),
      after_recovery: summarize(up.statuses, up.malformed),
      // How long after the dependency came back the last 503 (and 401) was answered.
      last_503_after_recovery_ms: up.last503,
      last_401_after_recovery_ms: up.last401,
    };
    console.error(JSON.stringify(row));
    return row;
  } finally {
    await fleet.dispose();
    await Promise.all(servers.map((x) => x.close()));
  }
}

async function outagePhase() {
  const n = Math.max(...SIZES);
  const rows = [];
  for (const dependency of OUTAGES) {
    // The coordinator holds the access token only: the other dependencies run without it.
    for (const coordinator of dependency === 'token' ? [false, true] : [false]) {
      rows.push(await outageRun(dependency, { n, coordinator }));
    }
  }
  return rows;
}

function outageTable(outage) {
  const lines = [
    '| dependency down | coordinator | calls while down | 503 / 401 while down | calls after recovery | 503 / 401 after recovery (of requests) | last 503 / 401 after recovery |',
    '|---|---|---:|---:|---:|---:|---:|',
  ];
  const ms = (x) => (x == null ? '—' : `${(x / 1000).toFixed(1)} s`);
  for (const o of outage) {
    const d = o.during_outage;
    const a = o.after_recovery;
    lines.push(
      `| ${o.dependency ?? 'token'} (N = ${o.n}) | ${o.coordinator ? 'with' : 'without'} | ${o.calls_during_outage ?? o.token_calls_during_outage} | ` +
        `${d.unavailable_503} / ${d.unauthorized_401 ?? '?'} of ${d.requests} | ${o.calls_after_recovery ?? o.token_calls_after_recovery} | ` +
        `${a.unavailable_503} / ${a.unauthorized_401 ?? '?'} of ${a.requests} | ${ms(o.last_503_after_recovery_ms)} / ${ms(o.last_401_after_recovery_ms)} |`,
    );
  }
  return lines.join('\n');
}

function table(calls) {
  const lines = [
    '| N | calls per lifetime without | with coordinator | errors without / with | coordinator requests per isolate per lifetime |',
    '|---|---|---|---|---|',
  ];
  for (const n of SIZES) {
    const a = calls.find((r) => r.n === n && !r.coordinator);
    const b = calls.find((r) => r.n === n && r.coordinator);
    lines.push(`| ${n} | ${a.calls_per_lifetime} | ${b.calls_per_lifetime} | ${a.errors + a.unavailable_503} / ${b.errors + b.unavailable_503} | ${b.coordinator_requests_per_isolate_per_lifetime} |`);
  }
  return lines.join('\n');
}

const started = Date.now();
const previous = existsSync(OUT) ? JSON.parse(readFileSync(OUT, 'utf8')) : {};
const calls = PHASES.includes('calls') ? await callsPhase() : previous.calls;
const latency = PHASES.includes('latency') ? await latencyPhase() : previous.latency;
const outage = PHASES.includes('outage') ? await outagePhase() : previous.outage;
const result = {
  when: new Date().toISOString(),
  quick: QUICK,
  settings: { lifetime_s: LIFETIME_S, lifetimes: LIFETIMES, rate_per_isolate: RATE, sizes: SIZES },
  phases_run: PHASES,
  calls,
  latency,
  outage,
  duration_s: Math.round((Date.now() - started) / 1000),
};
mkdirSync(path.dirname(OUT), { recursive: true });
writeFileSync(OUT, `${JSON.stringify(result, null, 2)}\n`);
if (calls) console.log(table(calls));
if (latency) console.log(`\ncold isolate: +${latency.added_cold_ms} ms with the coordinator; warm: +${latency.added_warm_ms} ms`);
if (outage) console.log(`\n${outageTable(outage)}`);
console.log(`\nwrote ${path.relative(ROOT, OUT)} in ${result.duration_s} s`);
