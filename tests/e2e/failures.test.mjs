// What the caller gets when something behind the gateway fails, or the gateway is misconfigured.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_SECRET, baseBindings, read, startStack, withJwt } from './harness.mjs';
import { closedPortUrl, makeKey, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';

function assertProblem(res, status) {
  assert.equal(res.status, status, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.ok(res.json, `not JSON: ${res.text}`);
  assert.equal(res.json.status, status);
  for (const field of ['type', 'title', 'detail', 'request_id']) {
    assert.equal(typeof res.json[field], 'string', `problem field ${field}: ${res.text}`);
  }
  for (const secret of [CLIENT_SECRET, API_KEY]) assert.ok(!res.text.includes(secret), 'a secret is in the body');
  assert.doesNotMatch(res.text, /\bat .*\(|panicked|RuntimeError|wasm-function/, 'a stack is in the body');
}

const post = (gw, jwt, init = {}) =>
  gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt), body: '{}', ...init }).then(read);

describe('failures', () => {
  test('origin down (closed port): 502 problem+json', async (t) => {
    const s = await startStack({ bindings: { ORIGIN_URL: await closedPortUrl() } });
    t.after(() => s.close());
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 502);
    assert.ok(!res.text.includes(s.token.issued[0] ?? 'none'), 'the access token is in the body');
  });

  test('origin slower than ORIGIN_TIMEOUT_MS: 504 problem+json, in about that time', async (t) => {
    const s = await startStack({ bindings: { ORIGIN_TIMEOUT_MS: '400' } });
    t.after(() => s.close());
    s.origin.hang(5000);
    const started = Date.now();
    const res = await post(s.gw, s.jwt);
    const took = Date.now() - started;
    assertProblem(res, 504);
    assert.ok(took < 3000, `took ${took} ms`);
    assert.equal(s.origin.count, 1);
  });

  test('ORIGIN_TIMEOUT_MS covers the response head only: a body streaming past it arrives whole', async (t) => {
    const s = await startStack({ bindings: { ORIGIN_TIMEOUT_MS: '400' } });
    t.after(() => s.close());
    // The head at once, then ten chunks 120 ms apart: the body ends about 1.2 s after the
    // head, three times the deadline.
    s.origin.respond(async (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      for (let i = 0; i < 10; i++) {
        res.write(`chunk-${i};`);
        await new Promise((r) => setTimeout(r, 120));
      }
      res.end('end');
    });
    const started = Date.now();
    const res = await post(s.gw, s.jwt);
    const took = Date.now() - started;
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, `${Array.from({ length: 10 }, (_, i) => `chunk-${i};`).join('')}end`);
    assert.ok(took >= 1000, `the body took only ${took} ms: it did not outlast the deadline`);
  });

  test('token endpoint down and nothing cached: 503 with Retry-After', async (t) => {
    const s = await startStack({ bindings: { TOKEN_URL: `${await closedPortUrl()}/oauth/access_token` } });
    t.after(() => s.close());
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 503);
    const retry = res.headers.get('retry-after');
    assert.match(retry ?? '', /^[1-9][0-9]*$/, `Retry-After: ${retry}`);
    assert.equal(s.origin.count, 0);
  });

  for (const [mode, what] of [
    ['garbage', 'a non-JSON body'],
    ['500', 'a 500'],
    ['no-access-token', 'JSON without access_token'],
    ['invalid-client', '401 invalid_client'],
  ]) {
    test(`token endpoint answering ${what}: 503 with Retry-After, and the endpoint is not called for every request`, async (t) => {
      const s = await startStack({ tokenOptions: { mode } });
      t.after(() => s.close());
      const first = await post(s.gw, s.jwt);
      assertProblem(first, 503);
      assert.match(first.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
      // A burst while it backs off: one probe for all of it (refused credentials: none, for a
      // minute).
      const burst = await Promise.all(Array.from({ length: 10 }, () => post(s.gw, s.jwt)));
      for (const res of burst) {
        assertProblem(res, 503);
        assert.match(res.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
      }
      const most = mode === 'invalid-client' ? 1 : 2;
      assert.ok(s.token.count <= most, `token endpoint called ${s.token.count} times for 11 requests`);
      assert.equal(s.origin.count, 0);
    });
  }

  test('token endpoint slower than TOKEN_TIMEOUT_MS: 503', async (t) => {
    const s = await startStack({ bindings: { TOKEN_TIMEOUT_MS: '300' }, tokenOptions: { mode: 'slow', delayMs: 3000 } });
    t.after(() => s.close());
    const started = Date.now();
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 503);
    assert.ok(Date.now() - started < 2500, 'the token timeout was not applied');
  });

  test('configuration missing (no API_KEY): 500 problem+json naming API_KEY, no secret value, nothing called', async (t) => {
    const [origin, token, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientSecret: CLIENT_SECRET }),
      makeKey('RS256'),
    ]);
    const bindings = baseBindings({ origin, token, key });
    delete bindings.API_KEY;
    const gw = (await startStack({ servers: false, bindings })).gw;
    t.after(async () => {
      await gw.dispose();
      await Promise.all([origin.close(), token.close()]);
    });
    const res = await post(gw, await signJwt(key));
    assertProblem(res, 500);
    assert.match(res.json.detail, /API_KEY/);
    assert.equal(origin.count, 0);
    assert.equal(token.count, 0);
    // Operators read the logs: the log may name the setting, never a secret value.
    assert.ok(!gw.output().includes(CLIENT_SECRET));
  });

  test('configuration invalid (TOKEN_CLIENT_AUTH unknown): 500 naming the setting, not its value', async (t) => {
    const s = await startStack({ bindings: { TOKEN_CLIENT_AUTH: 'private_key_jwt_xyz' } });
    t.after(() => s.close());
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 500);
    assert.match(res.json.detail, /TOKEN_CLIENT_AUTH/);
    assert.ok(!res.text.includes('private_key_jwt_xyz'), 'the value is echoed');
  });

  test('CUSTOMER_ID_HEADER without CUSTOMER_ID_KEY: 500 naming the key, nothing forwarded', async (t) => {
    // Forwarding without the id would leave the origin to trust whatever the caller sent.
    const s = await startStack({ bindings: { CUSTOMER_ID_HEADER: 'x-customer-id-zq' } });
    t.after(() => s.close());
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 500);
    assert.match(res.json.detail, /setting CUSTOMER_ID_KEY/);
    assert.ok(!res.text.includes('x-customer-id-zq'), 'the value is echoed');
    assert.equal(s.origin.count, 0);
    assert.equal(s.token.count, 0);
  });

  test('configuration invalid (JWT_ALGORITHMS with none): 500', async (t) => {
    const s = await startStack({ bindings: { JWT_ALGORITHMS: 'none' } });
    t.after(() => s.close());
    const res = await post(s.gw, s.jwt);
    assertProblem(res, 500);
    assert.match(res.json.detail, /JWT_ALGORITHMS/);
    assert.equal(s.origin.count, 0);
  });
});
