// A wasm trap (a panic ends in `unreachable`, which reaches JavaScript as a
// WebAssembly.RuntimeError) fails only the request that trapped, at once, with a 500
// problem+json; the requests already in flight on that instance complete with the origin's
// answers; requests that arrive meanwhile wait, and run on a fresh instance once none is in
// flight (src/platform/entry.js). The token coordinator's Durable Object, which shares its isolate's
// instance, follows the same rule.
//
// A real panic cannot be provoked from outside (that is the point of the fuzzing), so the trap
// is simulated where one would surface: a wrapper module around the built Worker makes an
// import the wasm calls throw a RuntimeError in the middle of one Rust poll. Each place is one
// case of the checklist: the origin `fetch` (before the origin saw the request), the request's
// log line (after the origin answered it), the coordinator's clock read (inside the Durable
// Object's answer).

import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, SCRIPT, baseBindings, read, requestLog, startStack, tempDir, waitFor, withJwt } from './harness.mjs';
import { makeKey, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';

const WRAPPER = `
import gateway, { TokenCoordinator as Coordinator } from './index.js';

const trap = (where) => new WebAssembly.RuntimeError('simulated trap in ' + where);

// The request whose log line names a request id starting "trap-in-log" traps writing it.
const log = console.log;
console.log = function (...args) {
  if (typeof args[0] === 'string' && args[0].includes('"request_id":"trap-in-log')) throw trap('the log line');
  return log.apply(this, args);
};

// A request for a path with "/trap-in-fetch" traps calling fetch for the origin; one with
// "/stuck" never gets an answer from it, whatever its deadline (a call that never ends).
const fetch = globalThis.fetch;
globalThis.fetch = function (input, init) {
  if (String(input).includes('/trap-in-fetch')) throw trap('the origin fetch');
  if (String(input).includes('/stuck')) return new Promise(() => {});
  return fetch.call(this, input, init);
};

// Armed by GET /__test/arm-coordinator-trap: the next coordinator request traps at its first
// clock read. Its answers are kept for GET /__test/coordinator-answers.
let armed = false;
const answers = [];
export class TokenCoordinator extends Coordinator {
  fetch(request) {
    if (armed) {
      armed = false;
      const now = Date.now;
      Date.now = () => {
        Date.now = now;
        throw trap('the coordinator');
      };
    }
    const answer = super.fetch(request);
    Promise.resolve(answer).then(async (res) => {
      answers.push({ status: res.status, type: res.headers.get('content-type'), body: await res.clone().text() });
    }, () => {});
    return answer;
  }
}

// The x-request-id of every request that reached this isolate: GET /__test/seen?id=ID.
const seen = new Set();
export default {
  fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === '/__test/seen') return Response.json({ seen: seen.has(url.searchParams.get('id')) });
    if (url.pathname === '/__test/arm-coordinator-trap') {
      armed = true;
      return new Response('armed');
    }
    if (url.pathname === '/__test/coordinator-answers') return Response.json(answers);
    seen.add(request.headers.get('x-request-id'));
    return gateway.fetch(request, env, ctx);
  },
  scheduled(event, env, ctx) {
    return gateway.scheduled(event, env, ctx);
  },
};
`;

/** The built Worker behind WRAPPER, in a temporary directory; resolves to the wrapper's path. */
function wrappedBuild(t) {
  const dir = tempDir('eap-recovery-');
  t.after(() => dir.rm());
  copyFileSync(SCRIPT, path.join(dir.dir, 'index.js'));
  copyFileSync(path.join(path.dirname(SCRIPT), 'index_bg.wasm'), path.join(dir.dir, 'index_bg.wasm'));
  writeFileSync(path.join(dir.dir, 'wrapper.js'), WRAPPER);
  return path.join(dir.dir, 'wrapper.js');
}

/**
 * Makes `origin` hold every request whose path contains "/held" until `release()`; every
 * request then gets the origin's usual JSON echo. `held` counts the requests being held.
 */
function holdAtOrigin(origin) {
  const waiting = [];
  origin.respond(async (req, res, rec) => {
    if (rec.url.includes('/held')) await new Promise((r) => waiting.push(r));
    res.writeHead(200, { 'content-type': 'application/json', 'x-origin': origin.name });
    res.end(JSON.stringify({ origin: origin.name, method: rec.method, url: rec.url, bodyBytes: rec.body.length }));
  });
  return {
    get held() {
      return waiting.length;
    },
    release() {
      for (const r of waiting.splice(0)) r();
    },
  };
}

/**
 * `promise`, or a failure naming `what` if it has not settled after `ms`: turns a hang (what a
 * trap used to cause) into a failed assertion instead of a stuck suite. Not a timing check:
 * every answer awaited this way is due in well under a second.
 */
function settles(promise, what, ms = 15000) {
  let timer;
  const hung = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer after ${ms} ms`)), ms);
  });
  return Promise.race([promise, hung]).finally(() => clearTimeout(timer));
}

/** Tracks whether `promise` has settled yet. */
function track(promise) {
  const state = { settled: false };
  state.promise = promise.finally(() => {
    state.settled = true;
  });
  return state;
}

/** The 500 problem+json a trapped request gets: the gateway's shape, nothing else in it. */
function assertTrapProblem(answer, requestId, secrets) {
  assert.equal(answer.status, 500, answer.text);
  assert.equal(answer.headers.get('content-type'), 'application/problem+json');
  assert.equal(answer.headers.get('cache-control'), 'no-store');
  assert.equal(answer.headers.get('x-request-id'), requestId);
  assert.deepEqual(Object.keys(answer.json ?? {}).sort(), ['detail', 'request_id', 'status', 'title', 'type'], answer.text);
  assert.equal(answer.json.type, 'urn:edge-auth-proxy:problem:internal');
  assert.equal(answer.json.status, 500);
  assert.equal(answer.json.request_id, requestId);
  assert.equal(typeof answer.json.title, 'string');
  assert.match(answer.json.detail, /failed/);
  // No stack, no error text, no secret.
  for (const leak of ['RuntimeError', 'simulated', 'wasm', '.js:', ' at ', ...secrets]) {
    assert.ok(!answer.text.includes(leak), `the problem holds ${JSON.stringify(leak)}: ${answer.text}`);
  }
}

async function seenByGateway(gw, id) {
  return waitFor(async () => (await (await gw.fetch(`/__test/seen?id=${id}`)).json()).seen, 10000);
}

describe('a wasm trap fails only the request that trapped', () => {
  for (const where of ['the origin fetch', 'the log line']) {
    test(`a trap in ${where}: a prompt 500 problem+json; the requests in flight complete; one arriving meanwhile waits for a fresh instance`, async (t) => {
      const s = await startStack({ script: wrappedBuild(t) });
      t.after(() => s.close());
      const hold = holdAtOrigin(s.origin);

      // Warm: the token in memory.
      for (const id of ['warm-1', 'warm-2']) {
        const r = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt, { 'x-request-id': id }) }));
        assert.equal(r.status, 200, r.text);
      }
      assert.equal((await requestLog(s.gw, 'warm-2')).token_source, 'memory');

      // Two requests in flight at the trap, held at the origin: a GET and a POST with a body
      // (a client would not retry it).
      const a = track(s.gw.fetch('/account/held-a', { headers: withJwt(s.jwt, { 'x-request-id': 'held-a' }) }).then(read));
      const b = track(
        s.gw
          .fetch('/account/held-b', {
            method: 'POST',
            headers: withJwt(s.jwt, { 'x-request-id': 'held-b', 'content-type': 'application/json' }),
            body: '{"order":42}',
          })
          .then(read),
      );
      await waitFor(() => hold.held === 2, 10000);
      assert.equal(hold.held, 2, 'both requests reached the origin');

      // The trap: answered while the other two are still at the origin.
      const trapId = where === 'the origin fetch' ? 'trap-in-fetch-1' : 'trap-in-log-1';
      const trapPath = where === 'the origin fetch' ? '/account/trap-in-fetch' : '/account/getprofile';
      const trapped = await settles(
        s.gw.fetch(trapPath, { headers: withJwt(s.jwt, { 'x-request-id': trapId }) }).then(read),
        'the trapping request',
      );
      assert.ok(!a.settled && !b.settled && hold.held === 2, 'the trapping request was answered while the others were in flight');
      assertTrapProblem(trapped, trapId, [CLIENT_SECRET, API_KEY, s.jwt, s.token.token]);
      const trapLog = await requestLog(s.gw, trapId);
      assert.equal(trapLog?.status, 500, JSON.stringify(trapLog));
      assert.equal(trapLog.outcome, 'wasm_trap');
      // The origin saw the trapping request only where the trap came after forwarding it.
      const atOrigin = s.origin.requests.filter((r) => r.headers['x-request-id'] === trapId).length;
      assert.equal(atOrigin, where === 'the origin fetch' ? 0 : 1);

      // A request arriving while the trapped instance drains: not lost, not served by it.
      const c = track(s.gw.fetch('/account/during-drain', { headers: withJwt(s.jwt, { 'x-request-id': 'during-drain' }) }).then(read));
      assert.ok(await seenByGateway(s.gw, 'during-drain'), 'the request reached the gateway');
      assert.ok(!s.origin.requests.some((r) => r.url === '/account/during-drain'), 'it waits for the drain');

      hold.release();
      const [ra, rb, rc] = await settles(Promise.all([a.promise, b.promise, c.promise]), 'the requests in flight and the one that waited');
      assert.equal(ra.status, 200, ra.text);
      assert.deepEqual(ra.json, { origin: 'origin', method: 'GET', url: '/account/held-a', bodyBytes: 0 });
      assert.equal(rb.status, 200, rb.text);
      assert.deepEqual(rb.json, { origin: 'origin', method: 'POST', url: '/account/held-b', bodyBytes: 12 });
      for (const url of ['/account/held-a', '/account/held-b', '/account/during-drain']) {
        assert.equal(s.origin.requests.filter((r) => r.url === url).length, 1, `${url} reached the origin once`);
      }
      assert.equal(rc.status, 200, rc.text);
      assert.equal(rc.json.url, '/account/during-drain');

      // The in-flight ones ran on the old instance (token in memory); the one that waited on a
      // fresh instance, which remembers nothing (the token comes from KV), and says so.
      assert.equal((await requestLog(s.gw, 'held-a')).token_source, 'memory');
      assert.equal((await requestLog(s.gw, 'held-b')).token_source, 'memory');
      assert.equal((await requestLog(s.gw, 'during-drain')).token_source, 'kv');
      const events = s.gw.jsonLogs().filter((l) => typeof l.event === 'string' && l.event.startsWith('wasm_'));
      assert.deepEqual(events.map((e) => e.event), ['wasm_trap', 'wasm_instance_replaced'], JSON.stringify(events));
      assert.equal(events[0].in_flight, 2);
      assert.equal(events[1].abandoned, 0);

      // The fresh instance is the one kept.
      const d = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt, { 'x-request-id': 'after' }) }));
      assert.equal(d.status, 200, d.text);
      assert.equal((await requestLog(s.gw, 'after')).token_source, 'memory');
      assert.equal(s.token.calls.length, 1, 'the token endpoint was called once');
    });
  }

  test('a call that never ends holds the newcomers only until ORIGIN_TIMEOUT_MS + 15 s, then is abandoned', async (t) => {
    const s = await startStack({ script: wrappedBuild(t), bindings: { ORIGIN_TIMEOUT_MS: '1000' } });
    t.after(() => s.close());
    const warm = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt) }));
    assert.equal(warm.status, 200, warm.text);
    s.gw.fetch('/account/stuck', { headers: withJwt(s.jwt, { 'x-request-id': 'stuck-1' }) }).catch(() => {});
    assert.ok(await seenByGateway(s.gw, 'stuck-1'), 'the stuck request reached the gateway');

    const trapped = await settles(
      s.gw.fetch('/account/trap-in-fetch', { headers: withJwt(s.jwt, { 'x-request-id': 'trap-in-fetch-2' }) }).then(read),
      'the trapping request',
    );
    assertTrapProblem(trapped, 'trap-in-fetch-2', [CLIENT_SECRET, API_KEY, s.jwt, s.token.token]);
    const c = await settles(
      s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt, { 'x-request-id': 'behind-stuck' }) }).then(read),
      'the request waiting behind the stuck one',
      45000,
    );
    assert.equal(c.status, 200, c.text);
    assert.equal((await requestLog(s.gw, 'behind-stuck')).token_source, 'kv', 'served by a fresh instance');
    const events = s.gw.jsonLogs().filter((l) => typeof l.event === 'string' && l.event.startsWith('wasm_'));
    assert.deepEqual(events, [
      { event: 'wasm_trap', in_flight: 1 },
      { event: 'wasm_instance_replaced', abandoned: 1 },
    ]);
  });

  test('a trap in the token coordinator: its answer is a prompt 500 problem+json; the requests in flight in its isolate complete', async (t) => {
    const [origin, token, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      makeKey('RS256'),
    ]);
    t.after(() => Promise.all([origin.close(), token.close()]));
    // Isolate 0 hosts the coordinator; 1 and 2 ask it.
    const fleet = (await startStack({ servers: false, size: 3, coordinator: true, bindings: baseBindings({ origin, token, key }), script: wrappedBuild(t) })).fleet;
    t.after(() => fleet.dispose());
    const jwt = await signJwt(key);
    const hold = holdAtOrigin(origin);
    const get = (i, p, id) => fleet.fetch(i, p, { headers: withJwt(jwt, { 'x-request-id': id }) }).then(read);
    const logOf = (id) => waitFor(() => fleet.requestLogs().find((l) => l.request_id === id), 3000);

    const warm = await get(0, '/account/getprofile', 'coord-warm');
    assert.equal(warm.status, 200, warm.text);
    assert.equal((await logOf('coord-warm')).token_source, 'coordinator');

    // A request in flight in the coordinator's isolate.
    const held = track(get(0, '/account/held-0', 'coord-held'));
    await waitFor(() => hold.held === 1, 10000);
    assert.equal(hold.held, 1);

    // Isolate 1 asks the coordinator, which traps: the coordinator answers at once (the asking
    // isolate logs it unreachable, not timed out) and the asking isolate fills itself.
    await fleet.fetch(0, '/__test/arm-coordinator-trap');
    const asked = await settles(get(1, '/account/getprofile', 'coord-asked'), 'the request whose coordinator trapped');
    assert.equal(asked.status, 200, asked.text);
    assert.ok(!held.settled && hold.held === 1, 'answered while the other request was in flight');
    const askedLog = await logOf('coord-asked');
    assert.equal(askedLog.coordinator, 'unreachable', JSON.stringify(askedLog));
    assert.equal(askedLog.token_source, 'endpoint');
    const answers = await (await fleet.fetch(0, '/__test/coordinator-answers')).json();
    const failed = answers.at(-1);
    assert.equal(failed?.status, 500, JSON.stringify(answers));
    assert.equal(failed.type, 'application/problem+json');
    const problem = JSON.parse(failed.body);
    assert.equal(problem.type, 'urn:edge-auth-proxy:problem:internal');
    assert.equal(problem.status, 500);
    for (const leak of ['RuntimeError', 'simulated', CLIENT_SECRET, token.issued[0]]) {
      assert.ok(!failed.body.includes(leak), `the coordinator's problem holds ${JSON.stringify(leak)}`);
    }

    // A gateway request arriving in the coordinator's isolate meanwhile waits for the drain.
    const during = track(get(0, '/account/getprofile', 'coord-during'));
    await waitFor(async () => (await (await fleet.fetch(0, '/__test/seen?id=coord-during')).json()).seen, 10000);

    hold.release();
    const [rh, rd] = await settles(Promise.all([held.promise, during.promise]), 'the request in flight and the one that waited');
    assert.equal(rh.status, 200, rh.text);
    assert.deepEqual(rh.json, { origin: 'origin', method: 'GET', url: '/account/held-0', bodyBytes: 0 });
    assert.equal(rd.status, 200, rd.text);
    assert.notEqual((await logOf('coord-during')).token_source, 'memory', 'served by a fresh instance');

    // The coordinator serves again, from a fresh instance: isolate 2's first request gets the
    // token from it.
    const next = await get(2, '/account/getprofile', 'coord-next');
    assert.equal(next.status, 200, next.text);
    const nextLog = await logOf('coord-next');
    assert.equal(nextLog.token_source, 'coordinator', JSON.stringify(nextLog));
    assert.equal(nextLog.coordinator, undefined);
    const events = fleet.jsonLogs().filter((l) => typeof l.event === 'string' && l.event.startsWith('wasm_'));
    assert.deepEqual(events.map((e) => e.event), ['wasm_trap', 'wasm_instance_replaced'], JSON.stringify(events));
  });
});
