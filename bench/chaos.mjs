// The fault soak (issue 19), re-runnable: does the gateway lose answers it could have given when
// its dependencies fail and come back? A fleet of isolates of a BUILT Worker (startStack with a size, tests/e2e/harness.mjs:
// one Miniflare, each isolate with its own TOKEN_CACHE), run twice, without and with the
// TokenCoordinator, takes mixed traffic at a steady rate while a schedule of faults plays on the
// loopback dependencies of tests/e2e (token endpoint, JWKS server, introspection endpoint,
// origin). Every answer is judged by bench/lib/chaos-classify.mjs: served, expected (bad input; a
// dependency down with nothing usable held), lost (refused although the gateway held what the
// request needed, or after the dependency had recovered), or accepted (an invalid request let
// through). Writes bench/results/chaos.json and chaos.svg (quick runs: chaos-quick.*, not
// committed) and prints the tables.
//
//   npm run build && npm run bench:chaos             # about 8 minutes on 2 cores
//   BENCH_QUICK=1 npm run bench:chaos                # shorter phases, 8 s tokens: under 3 minutes
//   node bench/chaos.mjs --build /work/main/build    # another build directory (default build/)
//   node bench/chaos.mjs --render bench/results/chaos.json   # tables and SVG again from a run
//
// Settings (environment): BENCH_CHAOS_ISOLATES (4), BENCH_CHAOS_RATE (requests per second over
// the fleet, 40), BENCH_CHAOS_LIFETIME (access-token lifetime, s; 20, quick 8), BENCH_CHAOS_RUNS
// (`without,with`), BENCH_CHAOS_SEED (1), BENCH_BUILD (as --build), BENCH_OUT (results file
// stem, default chaos / chaos-quick).
//
// Traffic, per 20 requests, each to an isolate picked at random: 9 repeated JWTs (32 callers), 3
// first-seen JWTs, 2 invalid JWTs (forged signature, expired, wrong audience, unknown kid,
// `alg: none`, malformed, in turn), 4 repeated opaque sessions (16 sessions), 1 first-seen
// session, 1 unknown session identifier. Faults, in order, with quiet periods between them: the
// token endpoint down (connections dropped) for longer than a token lives; the JWKS rotated to a
// new key (published, then every new token signed with it); the JWKS down (503), a second new key
// published meanwhile and used from a third of the outage on (a key the gateway never held);
// introspection down; the origin refusing every access token in use (401 Bearer
// error="invalid_token", once per isolate: the drop and the replay); origin latency spikes,
// one of them past ORIGIN_TIMEOUT_MS (8 s: far above what a loaded machine adds, so that a 504
// means the origin's wait).

import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { EDGE_MS, classify, lastRecovery } from './lib/chaos-classify.mjs';
import { machine } from './lib/proc.mjs';
import { renderTimeline } from './lib/timeline.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const arg = (name) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);

const QUICK = process.env.BENCH_QUICK === '1';
const num = (name, dflt) => Number(process.env[name] ?? dflt);
const ISOLATES = num('BENCH_CHAOS_ISOLATES', 4);
const RATE = num('BENCH_CHAOS_RATE', 40);
const LIFETIME_S = num('BENCH_CHAOS_LIFETIME', QUICK ? 8 : 20);
const RUNS = (process.env.BENCH_CHAOS_RUNS ?? 'without,with').split(',');
const SEED = num('BENCH_CHAOS_SEED', 1);
const ORIGIN_TIMEOUT_MS = 8000;
const STALL_MS = 500;
const BUILD = path.resolve(arg('--build') ?? process.env.BENCH_BUILD ?? path.join(ROOT, 'build'));
const OUT = path.join(ROOT, 'bench/results', process.env.BENCH_OUT ?? (QUICK ? 'chaos-quick' : 'chaos'));

const ROUTES = [
  { prefix: '/account/', auth: 'jwt' },
  { prefix: '/session/', auth: 'opaque' },
];
// Per 20 requests.
const MIX = [
  ['jwt-repeat', 9],
  ['jwt-new', 3],
  ['jwt-invalid', 2],
  ['session-repeat', 4],
  ['session-new', 1],
  ['session-invalid', 1],
];
const INVALID_JWTS = ['forged', 'expired', 'wrong-aud', 'unknown-kid', 'alg-none', 'malformed'];

/** The phases, in order (seconds). `fault` names what the phase does to a dependency. */
function phases() {
  const q = (full, quick) => (QUICK ? quick : full);
  return [
    { name: 'steady', s: q(20, 5) },
    { name: 'token endpoint down', s: q(Math.max(30, Math.ceil(1.5 * LIFETIME_S)), Math.ceil(1.5 * LIFETIME_S)), fault: 'token' },
    { name: 'after token endpoint', s: q(20, 6) },
    { name: 'JWKS rotated', s: q(15, 4), fault: 'jwks-rotated' },
    { name: 'JWKS down', s: q(24, 9), fault: 'jwks' },
    { name: 'after JWKS', s: q(20, 6) },
    { name: 'introspection down', s: q(20, 6), fault: 'introspection' },
    { name: 'after introspection', s: q(20, 5) },
    { name: 'origin refuses tokens', s: q(10, 4), fault: 'origin-refusal' },
    { name: 'origin latency spikes', s: q(20, 6), fault: 'origin-slow' },
    { name: 'after origin', s: q(15, 4) },
  ];
}
/** Origin spikes within their phase: from (s), for (s), added wait (ms). */
const SPIKES = QUICK
  ? [
      { at: 0.5, for: 1.5, ms: 800 },
      { at: 3, for: 1, ms: 9000 },
    ]
  : [
      { at: 1, for: 2, ms: 800 },
      { at: 5, for: 1, ms: 9000 },
      { at: 9, for: 2, ms: 400 },
      { at: 13, for: 2, ms: 1200 },
    ];

/** mulberry32: the same traffic for the same seed. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const quantile = (xs, q) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
const count = (xs, key) => xs.reduce((m, x) => ((m[key(x)] = (m[key(x)] ?? 0) + 1), m), {});
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);

// ---------------------------------------------------------------------------------------------
// one run

async function run(coordinated, lib) {
  const { harness, servers, introspection } = lib;
  const { CLIENT_ID, CLIENT_SECRET, ISSUER, baseBindings, sleep } = harness;
  const { startOrigin, startTokenEndpoint, startJwksServer, makeKey, signJwt, unsignedJwt, jwks } = servers;
  const [origin, token, idp, k1, k2, k3, forger] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, expiresIn: LIFETIME_S }),
    introspection.startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER }),
    makeKey('RS256', 'key-1'),
    makeKey('RS256', 'key-2'),
    makeKey('RS256', 'key-3'),
    makeKey('RS256', 'forger'),
  ]);
  const keySet = await startJwksServer(jwks(k1));
  // Every dependency URL carries its caller's tag, so the servers' records say who held what.
  const tagged = (url, tag) => `${url}${url.includes('?') ? '&' : '?'}soak=${tag}`;
  const { JWT_JWKS: _inline, ...base } = baseBindings({ origin, token, key: k1 });
  const settings = (tag) => ({
    ...base,
    TOKEN_URL: tagged(base.TOKEN_URL, tag),
    JWKS_URL: tagged(keySet.url, tag),
    INTROSPECTION_URL: tagged(idp.url, tag),
    SESSION_COOKIE: 'sid',
    ROUTES: JSON.stringify(ROUTES),
    ORIGIN_TIMEOUT_MS: String(ORIGIN_TIMEOUT_MS),
  });
  const { fleet } = await harness.startStack({
    servers: false,
    bindings: (i) => settings(`i${i}`),
    size: ISOLATES,
    coordinator: coordinated ? { bindings: settings('coordinator') } : false,
    verbose: false,
  });

  // Callers: 32 repeated JWTs per signing key (signed up front), 16 live sessions.
  const pools = new Map();
  for (const key of [k1, k2, k3]) {
    pools.set(key.kid, await Promise.all(Array.from({ length: 32 }, (_, j) => signJwt(key, { claims: { sub: `cust-r${j}` } }))));
  }
  const sessions = Array.from({ length: 16 }, (_, j) => idp.login(`cust-s${j}`));
  let signer = k1;

  const random = rng(SEED);
  const kinds = MIX.flatMap(([kind, w]) => Array(w).fill(kind));
  const label = coordinated ? 'with' : 'without';
  let invalidTurn = 0;

  async function request(kind, pick) {
    const jwtReq = (jwt) => ({ path: '/account/getprofile', init: { method: 'POST', headers: { 'customer-auth': `JWT ${jwt}`, 'content-type': 'application/json' }, body: '{}' } });
    const sessionReq = (sid) => ({
      path: '/session/profile',
      init: { method: 'GET', headers: pick < 0.5 ? { cookie: `sid=${sid}` } : { 'customer-auth': `Session ${sid}` } },
    });
    const now = Math.floor(Date.now() / 1000);
    // The key in use when the request is made (signing takes a moment; the schedule may move on).
    const key = signer;
    switch (kind) {
      case 'jwt-repeat': {
        const pool = pools.get(key.kid);
        return { ...jwtReq(pool[Math.floor(pick * pool.length)]), valid: true, kid: key.kid };
      }
      case 'jwt-new':
        return { ...jwtReq(await signJwt(key, { claims: { sub: `cust-n${Math.floor(pick * 1e9)}` } })), valid: true, kid: key.kid };
      case 'jwt-invalid': {
        const how = INVALID_JWTS[invalidTurn++ % INVALID_JWTS.length];
        const make = {
          forged: async () => ({ jwt: await signJwt(forger, { header: { kid: key.kid } }), kid: key.kid }),
          expired: async () => ({ jwt: await signJwt(key, { claims: { iat: now - 7200, exp: now - 3600 } }), kid: key.kid }),
          'wrong-aud': async () => ({ jwt: await signJwt(key, { audience: 'another-api' }), kid: key.kid }),
          'unknown-kid': async () => {
            const kid = `unknown-${Math.floor(pick * 1e9)}`;
            return { jwt: await signJwt(forger, { header: { kid } }), kid };
          },
          'alg-none': async () => ({ jwt: unsignedJwt() }),
          malformed: async () => ({ jwt: 'not-a-jwt' }),
        }[how];
        const { jwt, kid } = await make();
        return { ...jwtReq(jwt), valid: false, kid, invalid: how };
      }
      case 'session-repeat': {
        const sid = sessions[Math.floor(pick * sessions.length)];
        return { ...sessionReq(sid), valid: true, sid };
      }
      case 'session-new': {
        const sid = idp.login(`cust-sn${Math.floor(pick * 1e9)}`);
        return { ...sessionReq(sid), valid: true, sid };
      }
      default: {
        const sid = `sess-unknown-${Math.floor(pick * 1e12)}`;
        return { ...sessionReq(sid), valid: false, sid };
      }
    }
  }

  const answers = [];
  async function send(k, kind, isolate, pick) {
    const r = await request(kind, pick);
    const requestId = `chaos-${label}-${k}`;
    r.init.headers['x-request-id'] = requestId;
    const start = Date.now();
    let status = 0;
    let problem = null;
    try {
      const res = await fleet.fetch(isolate, r.path, r.init);
      const text = await res.text();
      status = res.status;
      if ((res.headers.get('content-type') ?? '').startsWith('application/problem+json')) {
        try {
          problem = String(JSON.parse(text).type ?? '').replace(/^urn:edge-auth-proxy:problem:/, '') || null;
        } catch {
          problem = 'unreadable';
        }
      }
    } catch {
      status = 0;
    }
    answers.push({ k, isolate, kind, valid: r.valid, kid: r.kid, sid: r.sid, invalid: r.invalid, requestId, start, end: Date.now(), status, problem });
  }

  // Warm-up, before the clock starts: each isolate compiles the wasm and fetches its access
  // token, key set and one session's answer, so that the first phase measures a running fleet
  // and not four cold starts on a shared machine.
  for (let i = 0; i < ISOLATES; i++) {
    const warm = async (p, init) => (await fleet.fetch(i, p, init)).arrayBuffer();
    await warm('/account/getprofile', { method: 'POST', headers: { 'customer-auth': `JWT ${pools.get(k1.kid)[0]}` }, body: '{}' });
    await warm('/session/profile', { headers: { cookie: `sid=${sessions[0]}` } });
  }

  // When the soak's own process stood still (a timer late by STALL_MS or more), every server
  // in it did too: answers overlapping such a stall are flagged, so that a loaded machine is
  // not read as the gateway's doing.
  const stalls = [];
  let tick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    if (now - tick >= 100 + STALL_MS) stalls.push([tick, now]);
    tick = now;
  }, 100);

  // The schedule: actions at absolute times, applied by the sending loop as their time comes.
  const plan = phases();
  const t0 = Date.now() + 500;
  const faults = [];
  const windows = [];
  const revoked = new Map();
  const actions = [];
  let at = t0;
  const open = {};
  const startFault = (dep, kind, text) => {
    open[kind] = { dep, kind, label: text, from: Date.now() };
  };
  const endFault = (kind) => {
    const w = { ...open[kind], to: Date.now() };
    windows.push(w);
    if (w.dep) faults.push({ dep: w.dep, from: w.from, to: w.to });
  };
  const schedule = (when, run) => {
    actions.push({ at: when, run });
    actions.sort((a, b) => a.at - b.at);
  };
  // A fault lasts its whole length from the moment it actually began, even when a busy machine
  // held the sending loop up: its end is scheduled as it begins.
  const during = (when, ms, begin, finish) =>
    schedule(when, () => {
      begin();
      schedule(Date.now() + ms, finish);
    });
  for (const p of plan) {
    p.from = at;
    p.to = at + p.s * 1000;
    const ms = p.s * 1000;
    switch (p.fault) {
      case 'token':
        during(p.from, ms, () => (token.setMode('down'), startFault('token', 'token', 'token endpoint down')), () => (token.setMode('ok'), endFault('token')));
        break;
      case 'jwks-rotated':
        during(
          p.from,
          ms,
          () => {
            keySet.setKeys(jwks(k2, k1));
            signer = k2;
            startFault(null, 'jwks-rotated', 'JWKS rotated: new key published and used');
          },
          () => endFault('jwks-rotated'),
        );
        break;
      case 'jwks': {
        const newKeyAfter = Math.round(ms / 3);
        during(
          p.from,
          ms,
          () => {
            keySet.setDown(true);
            keySet.setKeys(jwks(k3, k2));
            startFault('jwks', 'jwks', `JWKS down (503); a new key in use from +${Math.round(newKeyAfter / 1000)} s`);
            schedule(Date.now() + newKeyAfter, () => (signer = k3));
          },
          () => (keySet.setDown(false), endFault('jwks')),
        );
        break;
      }
      case 'introspection':
        during(p.from, ms, () => (idp.setMode('down'), startFault('introspection', 'introspection', 'introspection down')), () => (idp.setMode('ok'), endFault('introspection')));
        break;
      case 'origin-refusal':
        // The origin stops accepting every access token it has been sent so far: each isolate's
        // next request gets 401 Bearer error="invalid_token" once, drops its token and replays
        // with a new one. Tokens issued but not yet sent stay good (a replay's fresh token must
        // be accepted, or the gateway would rightly answer 502).
        schedule(p.from, () => {
          const now = Date.now();
          const inUse = new Set(origin.requests.map((r) => /^Bearer (.+)$/.exec(r.headers.authorization ?? '')?.[1]).filter(Boolean));
          for (const t of inUse) {
            origin.rejectToken(t);
            revoked.set(t, now);
          }
          windows.push({ kind: 'origin-refusal', label: `origin refuses the ${inUse.size} access tokens in use`, from: now, to: now + 300 });
        });
        break;
      case 'origin-slow':
        for (const [j, sp] of SPIKES.entries()) {
          const kind = `origin-slow-${j}`;
          const text = `origin +${sp.ms} ms${sp.ms >= ORIGIN_TIMEOUT_MS ? ' (past its timeout)' : ''}`;
          during(p.from + sp.at * 1000, sp.for * 1000, () => (origin.hang(sp.ms), startFault(null, kind, text)), () => (origin.hang(0), endFault(kind)));
        }
        break;
      default:
    }
    at = p.to;
  }
  const end = at;

  const inflight = new Set();
  const period = 1000 / RATE;
  for (let k = 0; ; k++) {
    const due = t0 + k * period;
    if (due >= end) break;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    while (actions.length && actions[0].at <= Date.now()) actions.shift().run();
    // Every random draw happens here, in order, so the same seed sends the same traffic.
    const kind = kinds[Math.floor(random() * kinds.length)];
    const isolate = Math.floor(random() * ISOLATES);
    const pick = random();
    const p = send(k, kind, isolate, pick);
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  }
  while (actions.length) actions.shift().run();
  await Promise.all(inflight);
  await sleep(300);
  clearInterval(ticker);
  for (const a of answers) a.stalled = stalls.some(([from, to]) => from < a.end && to > a.start);

  // What the dependencies saw, as the classifier reads it.
  const tagOf = (url) => new URL(url, 'http://soak.test').searchParams.get('soak');
  const sessionExp = (sid) => {
    const s = idp.sessions.get(sid);
    return s ? Number(s.exp) * 1000 : undefined;
  };
  const originHungMs = new Map();
  const originFirstAt = new Map();
  for (const r of origin.requests) {
    const id = r.headers['x-request-id'];
    originHungMs.set(id, Math.max(originHungMs.get(id) ?? 0, r.hungMs ?? 0));
    if (!originFirstAt.has(id)) originFirstAt.set(id, r.at);
  }
  const ev = {
    coordinated,
    faults,
    token: token.calls.map((c) => ({ tag: tagOf(c.url), at: c.at, doneAt: c.doneAt, status: c.status, expiresAt: c.token ? token.expiresAt.get(c.token) : undefined, revokedAt: c.token ? revoked.get(c.token) : undefined })),
    jwks: keySet.hits.map((h) => ({ tag: tagOf(h.url), at: h.at, doneAt: h.doneAt, status: h.status, kids: h.kids })),
    introspection: idp.calls.map((c) => ({ tag: tagOf(c.url), at: c.at, doneAt: c.doneAt, status: c.status, sid: c.token, active: c.active, exp: sessionExp(c.token) })),
    originTimeoutMs: ORIGIN_TIMEOUT_MS,
    originHungMs,
  };
  const lifetimeMs = LIFETIME_S * 1000;
  for (const a of answers) {
    Object.assign(a, classify(a, ev, { lifetimeMs }));
    // For reading a lost answer: how long after it was sent the origin first saw it (if ever).
    a.originAfterMs = originFirstAt.has(a.requestId) ? originFirstAt.get(a.requestId) - a.start : null;
    a.strict = classify(a, ev, { lifetimeMs, edge: 0 }).verdict;
  }
  const dependencyCalls = {
    token: token.calls.map((c) => c.at),
    jwks: keySet.hits.map((h) => h.at),
    introspection: idp.calls.map((c) => c.at),
    origin: origin.requests.map((r) => r.at),
  };
  // The gateway's own account of each lost answer (its log line's reasons, never a credential).
  await sleep(500);
  const logs = new Map(fleet.requestLogs().map((l) => [l.request_id, l]));
  const LOG_FIELDS = ['outcome', 'token_source', 'token_error', 'coordinator', 'jwks', 'introspection', 'introspection_error', 'origin_401', 'replayed', 'replay_skipped', 'config_error', 'token_refresh'];
  for (const a of answers) {
    if (a.verdict !== 'lost' && a.verdict !== 'accepted') continue;
    const line = logs.get(a.requestId);
    a.log = line ? Object.fromEntries(LOG_FIELDS.filter((f) => line[f] !== undefined).map((f) => [f, line[f]])) : null;
  }
  const result = summarizeRun({ coordinated, plan, t0, end, answers, dependencyCalls, windows, faults, stalls });
  await fleet.dispose();
  await Promise.all([origin.close(), token.close(), idp.close(), keySet.close()]);
  return result;
}

// ---------------------------------------------------------------------------------------------
// summaries

function summarizeRun({ coordinated, plan, t0, end, answers, dependencyCalls, windows, faults, stalls }) {
  const rel = (t) => round((t - t0) / 1000, 2);
  const phaseRows = plan.map((p) => {
    const mine = answers.filter((a) => a.start >= p.from && a.start < p.to);
    const minutes = (p.to - p.from) / 60_000;
    const perMinute = (ts) => round(ts.filter((t) => t >= p.from && t < p.to).length / minutes, 1);
    const byVerdict = (v) => mine.filter((a) => a.verdict === v);
    return {
      phase: p.name,
      fault: p.fault ?? null,
      from_s: rel(p.from),
      seconds: p.s,
      answers: mine.length,
      by_status: count(mine, (a) => a.status),
      served: byVerdict('ok').length,
      expected: byVerdict('expected').length,
      expected_by_rule: count(byVerdict('expected'), (a) => a.rule),
      lost: byVerdict('lost').length,
      lost_by_rule: count(byVerdict('lost'), (a) => a.rule),
      lost_during_stall: byVerdict('lost').filter((a) => a.stalled).length,
      // Seconds of the phase during which the soak's own process (and every server in it) stood
      // still: a phase with stalls measured a starved machine as much as the gateway.
      stalled_s: round(stalls.reduce((sum, [from, to]) => sum + Math.max(0, Math.min(to, p.to) - Math.max(from, p.from)), 0) / 1000, 1),
      accepted: byVerdict('accepted').length,
      // Verdicts that an edge of 0 instead of EDGE_MS would change (see chaos-classify.mjs).
      edge_dependent: mine.filter((a) => (a.verdict === 'lost') !== (a.strict === 'lost')).length,
      calls_per_minute: Object.fromEntries(Object.entries(dependencyCalls).map(([dep, ts]) => [dep, perMinute(ts)])),
      latency_ms: { p50: quantile(mine.map((a) => a.end - a.start), 0.5), p99: quantile(mine.map((a) => a.end - a.start), 0.99) },
    };
  });
  const seconds = [];
  for (let t = 0; t0 + t * 1000 < end; t++) {
    const mine = answers.filter((a) => a.start >= t0 + t * 1000 && a.start < t0 + (t + 1) * 1000);
    seconds.push({ t, statuses: count(mine, (a) => a.status), lost: mine.filter((a) => a.verdict === 'lost').length, p99_ms: quantile(mine.map((a) => a.end - a.start), 0.99) });
  }
  const lostAnswers = answers
    .filter((a) => a.verdict === 'lost' || a.verdict === 'accepted')
    .map((a) => {
      const p = plan.find((x) => a.start >= x.from && a.start < x.to);
      const dep = /^(token|jwks|introspection)/.exec(a.rule)?.[1];
      const rec = dep ? lastRecovery(faults, dep, a.start) : null;
      return {
        t: rel(a.start),
        phase: p?.name,
        isolate: a.isolate,
        kind: a.invalid ? `${a.kind}:${a.invalid}` : a.kind,
        status: a.status,
        problem: a.problem,
        verdict: a.verdict,
        rule: a.rule,
        ...(rec !== null && a.rule.endsWith('after recovery') ? { since_recovery_s: round((a.start - rec) / 1000, 2) } : {}),
        ms: a.end - a.start,
        origin_after_ms: a.originAfterMs,
        ...(a.stalled ? { during_stall: true } : {}),
        log: a.log,
      };
    });
  return {
    coordinator: coordinated,
    answers: answers.length,
    by_status: count(answers, (a) => a.status),
    lost: answers.filter((a) => a.verdict === 'lost').length,
    accepted: answers.filter((a) => a.verdict === 'accepted').length,
    edge_dependent: phaseRows.reduce((s, r) => s + r.edge_dependent, 0),
    lost_during_stall: phaseRows.reduce((s, r) => s + r.lost_during_stall, 0),
    stalls: stalls.map(([from, to]) => ({ from_s: rel(from), to_s: rel(to) })),
    phases: phaseRows,
    windows: windows.map((w) => ({ kind: w.kind, label: w.label, from_s: rel(w.from), to_s: rel(w.to) })),
    seconds,
    lost_groups: groupLost(lostAnswers),
  };
}

/**
 * Lost (and accepted) answers grouped by phase, rule, status and the gateway's log reasons: how
 * many, from which isolates and kinds of request, first and last (s from the start), how long
 * after the dependency's recovery, and how many overlapped a stall of the soak's process.
 */
function groupLost(list) {
  const groups = new Map();
  for (const a of list) {
    const key = JSON.stringify([a.phase, a.verdict, a.rule, a.status, a.problem, a.log]);
    const g = groups.get(key) ?? { phase: a.phase, verdict: a.verdict, rule: a.rule, status: a.status, problem: a.problem, log: a.log, count: 0, isolates: {}, kinds: {}, first_s: a.t, last_s: a.t, during_stall: 0 };
    g.count++;
    g.isolates[a.isolate] = (g.isolates[a.isolate] ?? 0) + 1;
    g.kinds[a.kind] = (g.kinds[a.kind] ?? 0) + 1;
    g.first_s = Math.min(g.first_s, a.t);
    g.last_s = Math.max(g.last_s, a.t);
    if (a.since_recovery_s !== undefined) g.since_recovery_s = [Math.min(g.since_recovery_s?.[0] ?? Infinity, a.since_recovery_s), Math.max(g.since_recovery_s?.[1] ?? -Infinity, a.since_recovery_s)];
    if (a.during_stall) g.during_stall++;
    g.max_ms = Math.max(g.max_ms ?? 0, a.ms);
    groups.set(key, g);
  }
  return [...groups.values()].sort((x, y) => x.first_s - y.first_s);
}

/** JSON with one line per item below the third level (a phase, a second, a group of lost answers). */
function pretty(v, depth = 0) {
  const pad = ' '.repeat(depth);
  if (depth >= 4 || v === null || typeof v !== 'object') return JSON.stringify(v);
  const items = Array.isArray(v) ? v.map((x) => pretty(x, depth + 1)) : Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => `${JSON.stringify(k)}: ${pretty(x, depth + 1)}`);
  const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
  return items.length ? `${open}\n${items.map((x) => `${pad} ${x}`).join(',\n')}\n${pad}${close}` : `${open}${close}`;
}

const statusText = (m) =>
  Object.entries(m)
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([s, n]) => `${n}×${s}`)
    .join(' ');
const rulesText = (m) =>
  Object.entries(m)
    .sort(([, a], [, b]) => b - a)
    .map(([r, n]) => `${n} ${r}`)
    .join('; ');

/** The Markdown tables of a results file. */
function tables(results) {
  const runs = results.runs;
  const name = (r) => (r.coordinator ? 'with the coordinator' : 'without');
  const lines = [];
  const stalledS = (p) => p.stalled_s ?? 0;
  lines.push(`| phase | s | ${runs.map((r) => `lost, ${name(r)}`).join(' | ')} | ${runs.map((r) => `expected, ${name(r)}`).join(' | ')} | soak stalled (s), ${runs.map(name).join(' / ')} |`);
  lines.push(`|---|---:|${runs.map(() => '---:|').join('')}${runs.map(() => '---:|').join('')}---:|`);
  runs[0].phases.forEach((p, k) => {
    lines.push(`| ${p.phase} | ${p.seconds} | ${runs.map((r) => `**${r.phases[k].lost}**`).join(' | ')} | ${runs.map((r) => r.phases[k].expected).join(' | ')} | ${runs.map((r) => stalledS(r.phases[k])).join(' / ')} |`);
  });
  const sum = (r, f) => round(r.phases.reduce((s, p) => s + f(p), 0));
  lines.push(`| all | ${runs[0].phases.reduce((s, p) => s + p.seconds, 0)} | ${runs.map((r) => `**${r.lost}**`).join(' | ')} | ${runs.map((r) => sum(r, (p) => p.expected)).join(' | ')} | ${runs.map((r) => sum(r, stalledS)).join(' / ')} |`);
  for (const r of runs) {
    const stalled = `${(r.stalls ?? []).length} stalls of the soak's own process (${results.settings.stall_ms ?? 500} ms or more) overlapping ${r.lost_during_stall ?? 0} of the lost answers`;
    lines.push('', `**${r.coordinator ? 'With the coordinator' : 'Without the coordinator'}**: ${r.answers} answers (${statusText(r.by_status)}), ${r.lost} lost, ${r.accepted} invalid let through, ${r.edge_dependent} verdicts that depend on the ${results.settings.edge_ms} ms edge, ${stalled}.`, '');
    lines.push('| phase | answers by status | lost: why | expected: why | token / JWKS / introspection / origin calls per minute | p99 ms |');
    lines.push('|---|---|---|---|---|---:|');
    for (const p of r.phases) {
      const c = p.calls_per_minute;
      lines.push(`| ${p.phase} | ${statusText(p.by_status)} | ${rulesText(p.lost_by_rule) || '—'} | ${rulesText(p.expected_by_rule) || '—'} | ${c.token} / ${c.jwks} / ${c.introspection} / ${c.origin} | ${p.latency_ms.p99 ?? '—'} |`);
    }
  }
  return lines.join('\n');
}

function svg(results) {
  const s = results.settings;
  return renderTimeline({
    title: 'Fault soak: answers per second by status, fault windows shaded',
    subtitle: `${results.date.slice(0, 10)} · ${s.isolates} isolates · ${s.rate_per_s} requests/s · ${s.token_lifetime_s} s access tokens · build ${s.build} · ${results.command}`,
    variants: results.runs.map((r) => ({
      label: `${r.coordinator ? 'With' : 'Without'} the token coordinator: ${r.lost} lost of ${r.answers}`,
      seconds: r.seconds,
      windows: r.windows.map((w) => ({ kind: w.kind.startsWith('origin-slow') ? 'origin-slow' : w.kind, label: w.label, from: w.from_s, to: w.to_s })),
      stalls: (r.stalls ?? []).map((x) => ({ from: x.from_s, to: x.to_s })),
    })),
  });
}

function write(results) {
  mkdirSync(path.dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.json`, `${pretty(results)}\n`);
  writeFileSync(`${OUT}.svg`, svg(results));
}

// ---------------------------------------------------------------------------------------------
// main

const rendering = arg('--render');
if (rendering) {
  const results = JSON.parse(readFileSync(rendering, 'utf8'));
  writeFileSync(rendering.replace(/\.json$/, '.svg'), svg(results));
  console.log(tables(results));
} else {
  // The e2e helpers load the Worker named by E2E_WORKER_SCRIPT: point them at the build asked for.
  process.env.E2E_WORKER_SCRIPT = path.join(BUILD, 'index.js');
  const lib = {
    harness: await import('../tests/e2e/harness.mjs'),
    servers: await import('../tests/e2e/servers.mjs'),
    introspection: await import('../tests/e2e/introspection.mjs'),
  };
  const require = createRequire(import.meta.url);
  const started = Date.now();
  const host = machine();
  const runs = [];
  for (const r of RUNS) {
    const coordinated = r === 'with';
    console.error(`chaos: ${coordinated ? 'with' : 'without'} the coordinator, ${phases().reduce((s, p) => s + p.s, 0)} s…`);
    runs.push(await run(coordinated, lib));
    const last = runs[runs.length - 1];
    console.error(`chaos: ${last.answers} answers, ${last.lost} lost, ${last.accepted} invalid let through`);
  }
  const results = {
    date: new Date().toISOString(),
    command: `${Object.keys(process.env).filter((k) => k.startsWith('BENCH_')).sort().map((k) => `${k}=${process.env[k]} `).join('')}node bench/chaos.mjs${arg('--build') ? ` --build ${arg('--build')}` : ''}`,
    quick: QUICK,
    machine: { ...host, loadAverageAtEnd: machine().loadAverageAtStart },
    versions: { node: process.version, miniflare: require('miniflare/package.json').version, workerd: require('workerd/package.json').version },
    settings: {
      build: `${path.relative(ROOT, BUILD) || '.'}/`,
      isolates: ISOLATES,
      rate_per_s: RATE,
      token_lifetime_s: LIFETIME_S,
      origin_timeout_ms: ORIGIN_TIMEOUT_MS,
      seed: SEED,
      edge_ms: EDGE_MS,
      stall_ms: STALL_MS,
      mix_per_20: Object.fromEntries(MIX),
      phases: phases().map((p) => ({ name: p.name, seconds: p.s, fault: p.fault ?? null })),
      origin_spikes: SPIKES,
    },
    runs,
    duration_s: Math.round((Date.now() - started) / 1000),
  };
  write(results);
  console.log(tables(results));
  console.log(`\nwrote ${path.relative(ROOT, OUT)}.json and .svg in ${results.duration_s} s`);
}
