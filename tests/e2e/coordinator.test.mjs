// The token coordinator (TOKEN_COORDINATOR) through the built Worker: four isolates in one
// Miniflare, each with its own KV namespace, bound to one TokenCoordinator Durable Object. A cold
// burst across all of them costs one token call and the origin sees one token; a refusal in one
// isolate costs one more call for all; a dead endpoint gives 503 with Retry-After everywhere and
// one call per back-off step; without the binding, or with a coordinator that fails, every
// isolate fills its own cache as before.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_SECRET, startStack, waitFor, withJwt } from './harness.mjs';

async function stack(t, { n = 4, coordinator = true, tokenOptions = {}, bindings = {} } = {}) {
  const s = await startStack({ size: n, coordinator, tokenOptions, bindings });
  t.after(() => s.close());
  return { origin: s.origin, token: s.token, fleet: s.fleet, jwt: s.jwt, n };
}

let ids = 0;
/** One request to isolate `i`: `{ status, retryAfter, id, body }`. */
async function call(s, i) {
  const id = `coord-${++ids}`;
  const res = await s.fleet.fetch(i, '/account/getprofile', {
    method: 'POST',
    headers: withJwt(s.jwt, { 'x-request-id': id }),
    body: '{}',
  });
  const body = await res.text();
  return { status: res.status, retryAfter: res.headers.get('retry-after'), id, body };
}

/** `perIsolate` concurrent requests to every isolate at once. */
function burst(s, perIsolate) {
  return Promise.all(Array.from({ length: s.n * perIsolate }, (_, k) => call(s, k % s.n)));
}

async function logOf(s, id) {
  return waitFor(() => s.fleet.requestLogs().find((l) => l.request_id === id), 3000);
}

describe('token coordinator across isolates', () => {
  test('a cold burst across 4 isolates costs one token call, and the origin sees one token', async (t) => {
    // A slow endpoint, so that every isolate asks while the one fill is in flight.
    const s = await stack(t, { tokenOptions: { delayMs: 300 } });
    const results = await burst(s, 10);
    assert.deepEqual(results.map((r) => r.status), Array(40).fill(200), results.find((r) => r.status !== 200)?.body);
    assert.equal(s.token.count, 1, `token endpoint called ${s.token.count} times`);
    const tokens = new Set(s.origin.requests.map((r) => r.headers.authorization));
    assert.deepEqual([...tokens], [`Bearer ${s.token.issued[0]}`]);
    const logs = await s.fleet.waitForRequestLogs(40);
    const sources = new Set(logs.map((l) => l.token_source));
    assert.ok(sources.has('coordinator'), `sources: ${[...sources]}`);
    assert.ok(!sources.has('endpoint'), 'no isolate called the endpoint itself');
    assert.ok(logs.every((l) => l.coordinator === undefined), 'the coordinator never failed');
    // The coordinator wrote the token to the KV namespace of the isolate that hosts it.
    const kv = s.fleet.kv(0);
    const { keys } = await (await kv).list();
    assert.equal(keys.length, 1);
    assert.ok(!(await (await kv).get(keys[0].name)).includes(CLIENT_SECRET));
  });

  test('a refusal in one isolate costs one more token call for all of them', async (t) => {
    const s = await stack(t);
    assert.ok((await burst(s, 1)).every((r) => r.status === 200));
    assert.equal(s.token.count, 1);
    const first = s.token.issued[0];
    s.origin.rejectToken(first);
    const seenBefore = s.origin.requests.length;
    // Isolate 0 meets the refusal: drops the token through the coordinator, gets the next one,
    // replays.
    const refused = await call(s, 0);
    assert.equal(refused.status, 200, refused.body);
    assert.equal(s.token.count, 2);
    const log = await logOf(s, refused.id);
    assert.equal(log.token_refresh, 'after_401');
    assert.equal(log.replayed, true);
    // The other isolates still hold the refused token: each meets the refusal once, and gets the
    // new token from the coordinator, not from the endpoint.
    for (let i = 1; i < s.n; i++) {
      const r = await call(s, i);
      assert.equal(r.status, 200, `isolate ${i}: ${r.body}`);
    }
    assert.equal(s.token.count, 2, `token endpoint called ${s.token.count} times`);
    // Each isolate sent the refused token once, and every answered request carried the new one.
    const since = s.origin.requests.slice(seenBefore);
    assert.equal(since.filter((r) => r.refusedToken).length, s.n);
    const served = new Set(since.filter((r) => !r.refusedToken).map((r) => r.headers.authorization));
    assert.deepEqual([...served], [`Bearer ${s.token.issued[1]}`]);
  });

  test('endpoint down: 503 with Retry-After everywhere, one probe at a time for all isolates, all served once it is back', async (t) => {
    const s = await stack(t, { tokenOptions: { mode: 'down' } });
    const first = await burst(s, 5);
    assert.deepEqual(first.map((r) => r.status), Array(20).fill(503));
    assert.ok(first.every((r) => Number(r.retryAfter) >= 1), 'every 503 says when to retry');
    assert.equal(s.token.count, 1, `token endpoint called ${s.token.count} times`);
    // While it backs off: bursts from every isolate cost the endpoint at most one call per 0.5 s.
    const started = Date.now();
    for (let i = 0; i < 3; i++) {
      const again = await burst(s, 5);
      assert.ok(again.every((r) => r.status === 503 && Number(r.retryAfter) >= 1));
    }
    const elapsed = Date.now() - started;
    const calls = s.token.count - 1;
    assert.ok(calls >= 1 && calls <= Math.ceil(elapsed / 500) + 1, `${calls} calls in ${elapsed} ms for 60 requests`);
    // The endpoint recovers: the next burst is served everywhere, by one call.
    s.token.setMode('ok');
    const before = s.token.count;
    const recovered = await burst(s, 5);
    assert.deepEqual(recovered.map((r) => r.status), Array(20).fill(200));
    assert.equal(s.token.count, before + 1);
  });

  test('without the binding every isolate fills its own cache, as before', async (t) => {
    const s = await stack(t, { n: 3, coordinator: false });
    const results = await burst(s, 5);
    assert.deepEqual(results.map((r) => r.status), Array(15).fill(200));
    // One per isolate: each has its own single flight and its own KV namespace.
    assert.equal(s.token.count, 3);
    const logs = await s.fleet.waitForRequestLogs(15);
    assert.ok(logs.every((l) => l.coordinator === undefined && l.token_source !== 'coordinator'));
  });

  test('a coordinator that fails: each isolate falls back to its own fill and logs it', async (t) => {
    const s = await stack(t, {
      n: 3,
      coordinator: {
        script: `export class TokenCoordinator { async fetch() { throw new Error('coordinator down'); } }
                 export default { fetch() { return new Response('stand-in'); } };`,
      },
    });
    const results = await burst(s, 5);
    assert.deepEqual(results.map((r) => r.status), Array(15).fill(200), results.find((r) => r.status !== 200)?.body);
    assert.equal(s.token.count, 3, 'one fill per isolate, not one per request');
    const logs = await s.fleet.waitForRequestLogs(15);
    const filled = logs.filter((l) => l.token_source === 'endpoint');
    assert.equal(filled.length, 3);
    assert.ok(filled.every((l) => l.coordinator === 'unreachable'), JSON.stringify(filled));
  });
});
