#!/usr/bin/env node
// The outputs of docs/configuration.md's "Metrics" queries, from a real local run. There is no
// local Analytics Engine SQL, so this runs a mixed workload through the built Worker (build/,
// in Miniflare) with METRICS bound to a recorder (tests/e2e/metrics-recorder.mjs), then
// evaluates each query's logic (filter, group, weighted count, weighted exact quantile) over
// the recorded points, each with `_sample_interval` 1 (nothing is sampled locally), and prints
// each query with the table the SQL API would return.
//
//   bash scripts/build.sh && node scripts/metrics-sample.mjs

import { startMeteredGateway } from '../tests/e2e/metrics-recorder.mjs';
import { startIntrospection } from '../tests/e2e/introspection.mjs';
import { baseBindings, CLIENT_ID, CLIENT_SECRET, sleep, withJwt } from '../tests/e2e/harness.mjs';
import { jwks, makeKey, nowSecs, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from '../tests/e2e/servers.mjs';

const DATASET = 'edge_auth_proxy';
const ROUTES = [
  { prefix: '/public', auth: 'public' },
  { prefix: '/account/', auth: 'jwt', methods: ['GET', 'POST'] },
  { prefix: '/session/', auth: 'opaque' },
];

// --- the run ------------------------------------------------------------------------------

const [origin, token, key] = await Promise.all([
  startOrigin(),
  startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
  makeKey('RS256'),
]);
const keys = await startJwksServer(jwks(key));
const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
const bindings = baseBindings({
  origin,
  token,
  key,
  ROUTES: JSON.stringify(ROUTES),
  JWKS_URL: keys.url,
  INTROSPECTION_URL: idp.url,
  INTROSPECTION_TIMEOUT_MS: '500',
  SESSION_COOKIE: 'sid',
});
delete bindings.JWT_JWKS;
const gw = await startMeteredGateway({ bindings });

let sent = 0;
async function send(path, headers = {}, method = 'GET') {
  const res = await gw.fetch(path, { method, headers: { 'cf-ray': `${(++sent).toString(16).padStart(16, '0')}-AMS`, ...headers }, cf: { colo: 'AMS' } });
  await res.arrayBuffer();
  return res.status;
}

try {
  const customers = await Promise.all(Array.from({ length: 5 }, (_, i) => signJwt(key, { claims: { sub: `customer-${i}` } })));
  const expired = await signJwt(key, { claims: { exp: nowSecs() - 3600 } });
  const forged = await signJwt(await makeKey('RS256', key.kid));
  const sessions = Array.from({ length: 4 }, (_, i) => idp.login(`session-customer-${i}`));

  for (let round = 0; round < 8; round++) {
    for (const jwt of customers) await send('/account/getprofile', withJwt(jwt), round % 2 ? 'GET' : 'POST');
    await send('/public/status');
    for (const sid of sessions) await send('/session/me', { cookie: `sid=${sid}` });
  }
  for (let i = 0; i < 4; i++) await send('/account/getprofile', withJwt(expired));
  for (let i = 0; i < 3; i++) await send('/account/getprofile', withJwt(forged));
  for (let i = 0; i < 3; i++) await send('/account/getprofile');
  for (let i = 0; i < 2; i++) await send('/admin/users', withJwt(customers[0]));
  await send('/session/me', { cookie: 'sid=an-unknown-session' });
  // The introspection endpoint goes down: new sessions get 503, and one call at a time probes.
  idp.setMode('500');
  for (let i = 0; i < 3; i++) await send('/session/me', { cookie: `sid=${idp.login(`late-${i}`)}` });
  await sleep(600); // past the half second between probes
  await send('/session/me', { cookie: `sid=${idp.login('later')}` });
  idp.setMode('ok');
  // Two cron runs: the token is fresh and the key set refreshed; then its server is down.
  await gw.scheduled();
  keys.setDown(true);
  await gw.scheduled();
  await sleep(200);
} finally {
  await gw.dispose();
  await Promise.all([origin.close(), token.close(), keys.close(), idp.close()]);
}

// --- the queries ----------------------------------------------------------------------------

const rows = gw.points().map((p) => {
  const row = { timestamp: p.timestamp, index1: p.indexes[0], _sample_interval: 1 };
  p.blobs.forEach((b, i) => (row[`blob${i + 1}`] = b));
  p.doubles.forEach((d, i) => (row[`double${i + 1}`] = d));
  return row;
});
const isRequest = (r) => !r.blob1.startsWith('event:'); // blob1 NOT LIKE 'event:%'

/** Rows grouped by `keyOf`, each group folded by `fold` into one output row. */
function groupBy(input, keyOf, fold) {
  const groups = new Map();
  for (const r of input) {
    const k = JSON.stringify(keyOf(r));
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(r);
  }
  return [...groups.entries()].map(([k, g]) => fold(JSON.parse(k), g));
}
const weight = (g) => g.reduce((n, r) => n + r._sample_interval, 0);
/** ClickHouse's quantileExactWeighted: the first value whose cumulative weight reaches level × total. */
function quantileExactWeighted(level, g, column) {
  const sorted = g.map((r) => [r[column], r._sample_interval]).sort((a, b) => a[0] - b[0]);
  const threshold = level * weight(g);
  let seen = 0;
  for (const [v, w] of sorted) {
    seen += w;
    if (seen >= threshold) return v;
  }
  return sorted.at(-1)?.[0];
}
const minute = (ms) => new Date(Math.floor(ms / 60000) * 60000).toISOString().replace('T', ' ').slice(0, 19);

const QUERIES = [
  {
    title: 'Answers by outcome per minute',
    sql: `SELECT toStartOfInterval(timestamp, INTERVAL '1' MINUTE) AS minute,
       blob1 AS outcome, double1 AS status, SUM(_sample_interval) AS answers
FROM ${DATASET}
WHERE timestamp > NOW() - INTERVAL '1' HOUR AND blob1 NOT LIKE 'event:%'
GROUP BY minute, outcome, status
ORDER BY minute, answers DESC`,
    run: () =>
      groupBy(rows.filter(isRequest), (r) => [minute(r.timestamp), r.blob1, r.double1], ([m, outcome, status], g) => ({ minute: m, outcome, status, answers: weight(g) }))
        .sort((a, b) => a.minute.localeCompare(b.minute) || b.answers - a.answers || a.outcome.localeCompare(b.outcome)),
  },
  {
    title: 'p50 / p99 latency by route',
    sql: `SELECT blob2 AS route, SUM(_sample_interval) AS requests,
       quantileExactWeighted(0.5)(double2, _sample_interval) AS p50_ms,
       quantileExactWeighted(0.99)(double2, _sample_interval) AS p99_ms,
       quantileExactWeighted(0.99)(double5, _sample_interval) AS p99_auth_ms,
       quantileExactWeighted(0.99)(double4, _sample_interval) AS p99_origin_ms
FROM ${DATASET}
WHERE timestamp > NOW() - INTERVAL '1' HOUR AND blob1 NOT LIKE 'event:%'
GROUP BY route
ORDER BY requests DESC`,
    run: () =>
      groupBy(rows.filter(isRequest), (r) => [r.blob2], ([route], g) => ({
        route,
        requests: weight(g),
        p50_ms: quantileExactWeighted(0.5, g, 'double2'),
        p99_ms: quantileExactWeighted(0.99, g, 'double2'),
        p99_auth_ms: quantileExactWeighted(0.99, g, 'double5'),
        p99_origin_ms: quantileExactWeighted(0.99, g, 'double4'),
      })).sort((a, b) => b.requests - a.requests || a.route.localeCompare(b.route)),
  },
  {
    title: 'Where access tokens came from',
    sql: `SELECT blob5 AS token_source, SUM(_sample_interval) AS requests
FROM ${DATASET}
WHERE timestamp > NOW() - INTERVAL '1' HOUR AND blob1 NOT LIKE 'event:%' AND blob5 != '-'
GROUP BY token_source
ORDER BY requests DESC`,
    run: () =>
      groupBy(rows.filter((r) => isRequest(r) && r.blob5 !== '-'), (r) => [r.blob5], ([token_source], g) => ({ token_source, requests: weight(g) }))
        .sort((a, b) => b.requests - a.requests),
  },
  {
    title: 'Key set and introspection failures',
    sql: `SELECT blob1 AS event, blob2 AS failure, blob3 AS trigger, SUM(_sample_interval) AS events
FROM ${DATASET}
WHERE timestamp > NOW() - INTERVAL '1' DAY
  AND blob1 IN ('event:jwks_fetch', 'event:introspection') AND blob2 != 'ok'
GROUP BY event, failure, trigger
ORDER BY events DESC`,
    run: () =>
      groupBy(rows.filter((r) => ['event:jwks_fetch', 'event:introspection'].includes(r.blob1) && r.blob2 !== 'ok'), (r) => [r.blob1, r.blob2, r.blob3], ([event, failure, trigger], g) => ({ event, failure, trigger, events: weight(g) }))
        .sort((a, b) => b.events - a.events || a.event.localeCompare(b.event)),
  },
  {
    title: 'Every dependency call, by outcome',
    sql: `SELECT blob1 AS event, blob2 AS outcome, blob4 AS source, SUM(_sample_interval) AS events
FROM ${DATASET}
WHERE timestamp > NOW() - INTERVAL '1' DAY AND blob1 LIKE 'event:%'
GROUP BY event, outcome, source
ORDER BY event, events DESC`,
    run: () =>
      groupBy(rows.filter((r) => !isRequest(r)), (r) => [r.blob1, r.blob2, r.blob4], ([event, outcome, source], g) => ({ event, outcome, source, events: weight(g) }))
        .sort((a, b) => a.event.localeCompare(b.event) || b.events - a.events || a.outcome.localeCompare(b.outcome)),
  },
];

function table(out) {
  if (out.length === 0) return '(no rows)';
  const cols = Object.keys(out[0]);
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(cols), line(cols.map(() => '---')), ...out.map((r) => line(cols.map((c) => String(r[c]))))].join('\n');
}

console.log(`${rows.length} points (${rows.filter(isRequest).length} requests, ${rows.filter((r) => !isRequest(r)).length} events) from ${sent} requests and 2 scheduled runs\n`);
for (const q of QUERIES) {
  console.log(`### ${q.title}\n\n\`\`\`sql\n${q.sql}\n\`\`\`\n\n${table(q.run())}\n`);
}
