// The console: one JSON line per request, and never a JWT, an access token, a secret or the
// api-key, whatever happened to the request.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_SECRET, sleep, startStack, withJwt } from './harness.mjs';
import { makeKey, signJwt } from './servers.mjs';

describe('logs', () => {
  test('exactly one JSON log line per request, with id, method, path, status, outcome; no credentials anywhere', async (t) => {
    const routes = [
      { prefix: '/public', auth: 'public' },
      // Logged as configured: with its trailing slash.
      { prefix: '/account/', methods: ['POST', 'GET'] },
    ];
    const s = await startStack({ bindings: { ROUTES: JSON.stringify(routes), JWT_COOKIE: 'sess' } });
    t.after(() => s.close());
    const { gw, jwt, key } = s;
    const forged = await signJwt(await makeKey('RS256', key.kid));
    const expired = await signJwt(key, { claims: { exp: Math.floor(Date.now() / 1000) - 3600 } });

    const plan = [
      { id: 'log-ok-1', path: '/account/getprofile', method: 'POST', headers: withJwt(jwt), status: 200, outcome: 'forwarded' },
      { id: 'log-ok-2', path: '/account/getprofile', method: 'GET', headers: { authorization: `Bearer ${jwt}` }, status: 200, outcome: 'forwarded' },
      { id: 'log-ok-3', path: '/account/x', method: 'GET', headers: { cookie: `sess=${jwt}` }, status: 200, outcome: 'forwarded' },
      { id: 'log-public', path: '/public/ping', method: 'GET', headers: {}, status: 200, outcome: 'forwarded' },
      { id: 'log-missing', path: '/account/getprofile', method: 'POST', headers: {}, status: 401 },
      { id: 'log-forged', path: '/account/getprofile', method: 'POST', headers: withJwt(forged), status: 401 },
      { id: 'log-expired', path: '/account/getprofile', method: 'POST', headers: withJwt(expired), status: 401 },
      { id: 'log-noroute', path: '/nowhere', method: 'GET', headers: withJwt(jwt), status: 404 },
      { id: 'log-method', path: '/account/getprofile', method: 'DELETE', headers: withJwt(jwt), status: 405 },
      { id: 'log-query', path: '/account/getprofile?access_token=leaky-query-value', method: 'GET', headers: withJwt(jwt), status: 200, outcome: 'forwarded' },
    ];
    for (const p of plan) {
      const res = await gw.fetch(p.path, { method: p.method, headers: { ...p.headers, 'x-request-id': p.id } });
      await res.arrayBuffer();
      assert.equal(res.status, p.status, p.id);
    }
    // Console output reaches us asynchronously.
    const lines = await gw.waitForRequestLogs(plan.length);
    await sleep(100);
    const all = gw.requestLogs();

    for (const p of plan) {
      const mine = all.filter((l) => l.request_id === p.id);
      assert.equal(mine.length, 1, `${p.id}: ${mine.length} log lines`);
      const [line] = mine;
      assert.equal(line.method, p.method, p.id);
      assert.equal(line.path, p.path.split('?')[0], p.id);
      assert.equal(line.status, p.status, p.id);
      assert.equal(typeof line.outcome, 'string', p.id);
      if (p.outcome) assert.equal(line.outcome, p.outcome, p.id);
      else assert.notEqual(line.outcome, 'forwarded', p.id);
    }
    assert.equal(all.length, plan.length, `log lines: ${all.length} for ${plan.length} requests`);

    const ok = lines.find((l) => l.request_id === 'log-ok-1');
    assert.equal(ok.route, '/account/', 'the prefix exactly as configured');
    assert.equal(all.find((l) => l.request_id === 'log-missing').route, '/account/');
    assert.equal(all.find((l) => l.request_id === 'log-public').route, '/public');
    assert.equal(all.find((l) => l.request_id === 'log-noroute').route, undefined);
    assert.equal(ok.kid, key.kid, 'kid of the verified JWT');
    assert.equal(ok.iss, 'https://issuer.test/', 'iss of the verified JWT');
    assert.ok(['memory', 'kv', 'endpoint'].includes(ok.token_source), `token_source ${ok.token_source}`);

    const out = gw.output();
    const secrets = {
      'the customer JWT': jwt,
      "the JWT's signature": jwt.split('.')[2],
      'the forged JWT': forged,
      'the expired JWT': expired,
      CLIENT_SECRET,
      API_KEY,
      'a query value': 'leaky-query-value',
    };
    for (const t of s.token.issued) secrets[`access token ${t}`] = t;
    for (const [what, value] of Object.entries(secrets)) {
      assert.ok(!out.includes(value), `${what} appears in the console output`);
    }
  });

  test('failures are logged with their outcome and still no credentials', async (t) => {
    const s = await startStack({ tokenOptions: { mode: 'invalid-client' } });
    t.after(() => s.close());
    const res = await s.gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(s.jwt, { 'x-request-id': 'log-503' }) });
    await res.arrayBuffer();
    assert.equal(res.status, 503);
    const [line] = (await s.gw.waitForRequestLogs(1)).filter((l) => l.request_id === 'log-503');
    assert.ok(line, 'no log line');
    assert.equal(line.status, 503);
    assert.notEqual(line.outcome, 'forwarded');
    const out = s.gw.output();
    for (const value of [s.jwt, CLIENT_SECRET, API_KEY]) assert.ok(!out.includes(value), 'a credential in the console');
    // The secret also must not appear base64-encoded (as in a Basic header).
    assert.ok(!out.includes(Buffer.from(`test-client:${CLIENT_SECRET}`).toString('base64')));
  });
});
