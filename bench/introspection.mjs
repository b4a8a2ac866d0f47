// Introspection calls per 10,000 requests on an `opaque` route (issue 11), re-runnable: the
// BUILT Worker in Miniflare against the loopback origin and token endpoint of tests/e2e and a
// loopback RFC 7662 endpoint that counts its calls. Prints one JSON summary.
//
//   npm run build && npm run bench:introspection
//
// The mix: SESSIONS live sessions reused with Zipf-like popularity (session k is picked with
// weight 1/k^ZIPF_S, as a few customers chat a lot and most a little), UNKNOWN_SHARE of the
// requests carrying an identifier the endpoint never issued (a fresh random one each time:
// logged-out cookies, guesses; the worst case for the cache), sent by CONCURRENCY callers, half
// in the cookie and half in `Authorization: Bearer`. The run lasts well under the 5-minute cap
// on remembered answers, so each session is asked about once; a longer run adds about one call
// per active session per 5 minutes.
//
// Settings (environment): BENCH_REQUESTS, BENCH_SESSIONS, BENCH_ZIPF_S, BENCH_UNKNOWN_SHARE,
// BENCH_CONCURRENCY, BENCH_SEED.

import { randomBytes } from 'node:crypto';

import { CLIENT_ID, CLIENT_SECRET, ISSUER, startStack } from '../tests/e2e/harness.mjs';
import { startIntrospection } from '../tests/e2e/introspection.mjs';

const num = (name, dflt) => Number(process.env[name] ?? dflt);
const REQUESTS = num('BENCH_REQUESTS', 10_000);
const SESSIONS = num('BENCH_SESSIONS', 200);
const ZIPF_S = num('BENCH_ZIPF_S', 1.1);
const UNKNOWN_SHARE = num('BENCH_UNKNOWN_SHARE', 0.05);
const CONCURRENCY = num('BENCH_CONCURRENCY', 16);
let seed = num('BENCH_SEED', 11);

/** A small deterministic PRNG (mulberry32), so two runs send the same mix. */
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
const s = await startStack({
  bindings: {
    ROUTES: JSON.stringify([{ prefix: '/session', auth: 'opaque' }]),
    INTROSPECTION_URL: idp.url,
    SESSION_COOKIE: 'sid',
  },
});

try {
  const sessions = Array.from({ length: SESSIONS }, (_, i) => idp.login(`cust-${i}`));
  const weights = sessions.map((_, k) => 1 / (k + 1) ** ZIPF_S);
  const total = weights.reduce((a, b) => a + b, 0);
  const cumulative = [];
  weights.reduce((acc, w, i) => (cumulative[i] = acc + w / total), 0);
  const pick = () => {
    const r = random();
    const i = cumulative.findIndex((c) => r < c);
    return sessions[i < 0 ? sessions.length - 1 : i];
  };

  // The plan first, so that what is sent does not depend on timing.
  const plan = Array.from({ length: REQUESTS }, (_, i) => {
    const unknown = random() < UNKNOWN_SHARE;
    const id = unknown ? `sess-unknown-${randomBytes(12).toString('hex')}` : pick();
    const headers = i % 2 ? { cookie: `sid=${id}` } : { authorization: `Bearer ${id}` };
    return { id, unknown, headers };
  });

  const statuses = new Map();
  const started = Date.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let i = next++; i < plan.length; i = next++) {
        const res = await s.gw.fetch('/session/profile', { headers: plan[i].headers });
        await res.arrayBuffer();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      }
    }),
  );
  const ms = Date.now() - started;

  const used = new Set(plan.filter((p) => !p.unknown).map((p) => p.id));
  const unknownRequests = plan.filter((p) => p.unknown).length;
  const calls = idp.count;
  const callsForKnown = idp.calls.filter((c) => used.has(c.token)).length;
  const summary = {
    requests: REQUESTS,
    concurrency: CONCURRENCY,
    sessions: SESSIONS,
    sessions_used: used.size,
    zipf_s: ZIPF_S,
    unknown_requests: unknownRequests,
    duration_ms: ms,
    statuses: Object.fromEntries(statuses),
    introspection_calls: calls,
    introspection_calls_per_10000_requests: Math.round((calls / REQUESTS) * 10_000),
    calls_for_live_sessions: callsForKnown,
    calls_for_unknown_identifiers: calls - callsForKnown,
    // Without the cache every request would be one call.
    calls_saved_share: Number((1 - calls / REQUESTS).toFixed(4)),
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  const expected200 = REQUESTS - unknownRequests;
  if ((statuses.get(200) ?? 0) !== expected200 || (statuses.get(401) ?? 0) !== unknownRequests) {
    process.stderr.write(`unexpected statuses: ${JSON.stringify(summary.statuses)}\n`);
    process.exitCode = 1;
  }
} finally {
  await s.close();
  await idp.close();
}
