// Token-lifecycle measurement (issue #4), re-runnable: the BUILT Worker in Miniflare against the
// loopback test origin and token endpoint of tests/e2e. Prints one JSON summary.
//
//   npm run build && npm run bench:tokens
//
// 1. `boundary`: REQUESTS requests (default 10,000) from CONCURRENCY callers, paced to last
//    about DURATION_S seconds, with a token of EXPIRES_IN seconds, so the run crosses token
//    lifetime boundaries. Counts token-endpoint calls, errors, and tokens the origin saw expired
//    (the origin checks every token against the endpoint's record of its expiry).
// 2. `outage`: a token is cached, then the token endpoint is down for OUTAGE_S seconds while
//    requests keep coming (its refresh window opens during the outage), then up again for a
//    few seconds. Counts the requests that got an error.
//
// Settings (environment): BENCH_REQUESTS, BENCH_CONCURRENCY, BENCH_DURATION_S,
// BENCH_EXPIRES_IN, BENCH_OUTAGE_S, BENCH_OUTAGE_EXPIRES_IN.

import { startStack, withJwt } from '../tests/e2e/harness.mjs';

const num = (name, dflt) => Number(process.env[name] ?? dflt);
const REQUESTS = num('BENCH_REQUESTS', 10_000);
const CONCURRENCY = num('BENCH_CONCURRENCY', 16);
const DURATION_S = num('BENCH_DURATION_S', 20);
const EXPIRES_IN = num('BENCH_EXPIRES_IN', 12);
const OUTAGE_S = num('BENCH_OUTAGE_S', 15);
const OUTAGE_EXPIRES_IN = num('BENCH_OUTAGE_EXPIRES_IN', 20);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function call(gw, jwt) {
  const res = await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt), body: '{"bench":1}' });
  await res.arrayBuffer();
  return res.status;
}

/** `n` requests from `concurrency` callers, started no faster than `n / durationMs`. */
async function paced(gw, jwt, { n, concurrency, durationMs }) {
  const started = Date.now();
  const statuses = new Map();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const due = started + (i * durationMs) / n;
        if (Date.now() < due) await sleep(due - Date.now());
        const status = await call(gw, jwt);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return { ms: Date.now() - started, statuses: Object.fromEntries(statuses) };
}

/** Requests from `concurrency` callers until `until` (epoch ms). */
async function until(gw, jwt, { until: end, concurrency }) {
  const statuses = new Map();
  let n = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (Date.now() < end) {
        const status = await call(gw, jwt);
        n++;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        await sleep(5);
      }
    }),
  );
  return { requests: n, statuses: Object.fromEntries(statuses) };
}

const errors = (statuses) => Object.entries(statuses).reduce((sum, [s, n]) => sum + (s === '200' ? 0 : n), 0);

async function boundary() {
  const s = await startStack({ tokenOptions: { expiresIn: EXPIRES_IN } });
  try {
    s.origin.checkTokens((tok) => s.token.isLive(tok));
    const run = await paced(s.gw, s.jwt, { n: REQUESTS, concurrency: CONCURRENCY, durationMs: DURATION_S * 1000 });
    const logs = await s.gw.waitForRequestLogs(REQUESTS, 10_000);
    const calls = s.token.count;
    return {
      requests: REQUESTS,
      seconds: run.ms / 1000,
      token_expires_in_s: EXPIRES_IN,
      token_lifetimes_spanned: +(run.ms / 1000 / EXPIRES_IN).toFixed(2),
      token_endpoint_calls: calls,
      token_endpoint_calls_per_10k: +((calls * 10_000) / REQUESTS).toFixed(2),
      refreshes_ahead: logs.filter((l) => l.token_refresh === 'ahead').length,
      requests_that_waited_for_the_endpoint: logs.filter((l) => l.token_source === 'endpoint').length,
      errors: errors(run.statuses),
      expired_tokens_seen_by_origin: s.origin.requests.filter((r) => r.refusedToken).length,
      statuses: run.statuses,
    };
  } finally {
    await s.close();
  }
}

async function outage() {
  const s = await startStack({ tokenOptions: { expiresIn: OUTAGE_EXPIRES_IN } });
  try {
    s.origin.checkTokens((tok) => s.token.isLive(tok));
    const warm = await call(s.gw, s.jwt);
    const obtained = Date.now();
    const before = s.token.count;
    s.token.setMode('down');
    const down = await until(s.gw, s.jwt, { until: obtained + OUTAGE_S * 1000, concurrency: CONCURRENCY });
    const callsWhileDown = s.token.count - before;
    s.token.setMode('ok');
    const up = await until(s.gw, s.jwt, { until: Date.now() + 5000, concurrency: CONCURRENCY });
    return {
      token_expires_in_s: OUTAGE_EXPIRES_IN,
      outage_s: OUTAGE_S,
      warm_status: warm,
      requests_while_down: down.requests,
      errors_while_down: errors(down.statuses),
      token_endpoint_calls_while_down: callsWhileDown,
      requests_after_recovery: up.requests,
      errors_after_recovery: errors(up.statuses),
      expired_tokens_seen_by_origin: s.origin.requests.filter((r) => r.refusedToken).length,
      refreshed_after_recovery: s.token.issued.length > 1,
    };
  } finally {
    await s.close();
  }
}

const summary = { boundary: await boundary(), outage: await outage() };
console.log(JSON.stringify(summary, null, 2));
