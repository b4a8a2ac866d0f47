// Origin 401s through the built Worker (issue 9, hole 2): only a 401 whose WWW-Authenticate
// carries `Bearer error="invalid_token"` refuses the gateway's access token (by default); every
// other 401, a login's wrong password, goes back as the origin sent it, costs no token and
// leaves the cached token in memory and KV. ORIGIN_TOKEN_REFUSAL's three modes; the 502 and
// its config_error line when a fresh token is refused; and the demo's wrong-password login.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';

import { unstable_readConfig } from 'wrangler';

import { DEMO_API_KEY, DEMO_CLIENT_SECRET, DEMO_CUSTOMER_ID_KEY, DEMO_GATEWAY_SIGNING_KEY, startDemoOrigin } from '../../demo/origin.mjs';
import { ROOT, read, requestLog, startStack, withJwt } from './harness.mjs';

const ROUTES = JSON.stringify([
  { prefix: '/auth/customer_authenticate', auth: 'public', methods: ['POST'] },
  { prefix: '/account/', auth: 'jwt', methods: ['POST', 'GET'] },
]);
const REFUSAL = 'Bearer realm="api", error="invalid_token", error_description="the gateway token expired"';
const LOGIN_BODY = '{"error":"invalid_credentials","message":"Unknown user or wrong password."}';

let ids = 0;
/** A login POST with its own x-request-id; resolves `{ res, id }`. */
async function login(gw, body = 'username=alice&password=nope') {
  const id = `refusal-${++ids}`;
  const res = await read(
    await gw.fetch('/auth/customer_authenticate', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-request-id': id },
      body,
    }),
  );
  return { res, id };
}

async function profile(gw, jwt, body = '{}') {
  const id = `refusal-${++ids}`;
  const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt, { 'x-request-id': id }), body }));
  return { res, id };
}

describe('a 401 that is not a refusal goes back as sent and costs nothing', () => {
  let s;
  before(async () => {
    s = await startStack({ bindings: { ROUTES } });
    // Warm: one token, cached in memory and KV.
    assert.equal((await login(s.gw, 'username=alice&password=right')).res.status, 200);
    assert.equal(s.token.count, 1);
  });
  after(() => s?.close());
  beforeEach(() => s.origin.reset());

  for (const [what, challenges] of [
    ['no challenge', []],
    ['Basic', ['Basic realm="login"']],
    ['Bearer insufficient_scope', ['Bearer error="insufficient_scope", scope="profile"']],
    ['Bearer realm only', ['Bearer realm="x"']],
    ['two fields, neither a refusal', ['Basic realm="a, b"', 'Bearer realm="x", error="invalid_request"']],
  ]) {
    test(`${what}: the origin once, no token call, the token stays in memory and KV, the 401 byte for byte`, async () => {
      const kvBefore = await s.gw.kvEntries();
      const tokenCalls = s.token.count;
      s.origin.unauthorized(1, { challenges, body: LOGIN_BODY });
      const { res, id } = await login(s.gw);
      assert.equal(res.status, 401, res.text);
      assert.equal(res.text, LOGIN_BODY);
      assert.equal(res.headers.get('content-type'), 'application/json');
      assert.equal(res.headers.get('x-origin-401'), 'origin');
      assert.equal(res.headers.get('www-authenticate'), challenges.length ? challenges.join(', ') : null);
      assert.equal(s.origin.count, 1, 'sent to the origin once');
      assert.equal(s.token.count, tokenCalls, 'a token-endpoint call');
      assert.deepEqual(await s.gw.kvEntries(), kvBefore, 'KV changed');
      assert.equal(s.origin.last().headers.authorization, `Bearer ${s.token.issued[0]}`);
      const log = await requestLog(s.gw, id);
      assert.equal(log.origin_401, 'passed');
      assert.equal(log.token_source, 'memory');
      for (const field of ['token_refresh', 'replayed', 'replay_skipped', 'config_error']) assert.equal(log[field], undefined, field);
      // The next request still carries the first token.
      assert.equal((await login(s.gw, 'username=alice&password=right')).res.status, 200);
      assert.equal(s.origin.last().headers.authorization, `Bearer ${s.token.issued[0]}`);
    });
  }

  test('with the token endpoint down, a wrong password is still the origin\'s 401, not a 503', async () => {
    s.token.setMode('down');
    try {
      for (let i = 0; i < 5; i++) {
        s.origin.unauthorized(1, { challenges: [], body: LOGIN_BODY });
        const { res } = await login(s.gw);
        assert.equal(res.status, 401, res.text);
        assert.equal(res.text, LOGIN_BODY);
      }
    } finally {
      s.token.setMode('ok');
    }
    assert.equal(s.token.count, 1);
  });
});

describe('a Bearer invalid_token 401 refuses the gateway token', () => {
  test('replayed once with a new token; KV holds the new one', async (t) => {
    const s = await startStack({ bindings: { ROUTES } });
    t.after(() => s.close());
    assert.equal((await profile(s.gw, s.jwt)).res.status, 200);
    s.origin.reset();
    s.origin.unauthorized(1, { challenges: ['Basic realm="a, b", Bearer error=invalid_token'] });
    const { res, id } = await profile(s.gw, s.jwt, '{"replay":"me"}');
    assert.equal(res.status, 200, res.text);
    assert.equal(s.origin.count, 2, 'one replay');
    assert.equal(s.token.count, 2, 'one new token');
    assert.equal(s.origin.requests[1].headers.authorization, `Bearer ${s.token.issued[1]}`);
    assert.equal(s.origin.requests[1].body.toString(), '{"replay":"me"}');
    const kv = await s.gw.kvEntries();
    assert.equal(kv.length, 1);
    assert.ok(kv[0].value.includes(s.token.issued[1]) && !kv[0].value.includes(s.token.issued[0]), 'KV kept the refused token');
    const log = await requestLog(s.gw, id);
    assert.equal(log.origin_401, 'refusal');
    assert.equal(log.replayed, true);
    assert.equal(log.token_refresh, 'after_401');
  });

  test('the fresh token refused too: 502 problem+json, nothing of the challenge, a config_error line', async (t) => {
    const s = await startStack({ bindings: { ROUTES } });
    t.after(() => s.close());
    s.origin.unauthorized(2, { challenges: [REFUSAL], body: '{"error":"invalid_token","detail":"origin-private-detail"}' });
    const { res, id } = await profile(s.gw, s.jwt);
    assert.equal(res.status, 502, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(res.headers.get('www-authenticate'), null, 'the origin challenge reached the caller');
    assert.equal(res.headers.get('x-origin-401'), null);
    assert.equal(res.json.type, 'urn:edge-auth-proxy:problem:origin-refused-credentials');
    assert.equal(res.json.status, 502);
    for (const origin of ['invalid_token', 'origin-private-detail', 'the gateway token expired']) assert.ok(!res.text.includes(origin), origin);
    assert.equal(s.origin.count, 2);
    assert.equal(s.token.count, 2);
    const log = await requestLog(s.gw, id);
    assert.equal(log.status, 502);
    assert.equal(log.outcome, 'origin_refused_token');
    assert.equal(log.config_error, 'origin_refused_token');
    assert.equal(log.replayed, true);
    for (const tok of s.token.issued) assert.ok(!s.gw.output().includes(tok), 'a token in the logs');
  });

  test('no new token (the drop cooldown keeps the replacement token): 502 and config_error', async (t) => {
    const s = await startStack({ bindings: { ROUTES } });
    t.after(() => s.close());
    assert.equal((await profile(s.gw, s.jwt)).res.status, 200);
    // Inside the drop cooldown the replacement token is kept: refusing it is a refused fresh token.
    s.origin.unauthorized(1);
    assert.equal((await profile(s.gw, s.jwt)).res.status, 200);
    s.origin.reset();
    s.origin.unauthorized(5);
    const { res, id } = await profile(s.gw, s.jwt);
    assert.equal(res.status, 502, res.text);
    assert.equal(res.headers.get('www-authenticate'), null);
    assert.equal(s.origin.count, 1);
    assert.equal(s.token.count, 2, 'no endpoint call inside the cooldown');
    const log = await requestLog(s.gw, id);
    assert.equal(log.replay_skipped, 'no_new_token');
    assert.equal(log.config_error, 'origin_refused_token');
  });

  test('token endpoint down after a refusal: 503 with Retry-After', async (t) => {
    const s = await startStack({ bindings: { ROUTES } });
    t.after(() => s.close());
    assert.equal((await profile(s.gw, s.jwt)).res.status, 200);
    s.token.setMode('down');
    s.origin.unauthorized(1, { challenges: [REFUSAL] });
    const { res } = await profile(s.gw, s.jwt);
    assert.equal(res.status, 503, res.text);
    assert.match(res.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    assert.equal(res.headers.get('www-authenticate'), null);
  });
});

describe('ORIGIN_TOKEN_REFUSAL', () => {
  test('any_401: a challenge-less 401 is a refusal and is replayed; a second 401 goes back as sent', async (t) => {
    const s = await startStack({ bindings: { ROUTES, ORIGIN_TOKEN_REFUSAL: 'any_401' } });
    t.after(() => s.close());
    assert.equal((await login(s.gw, 'username=alice&password=right')).res.status, 200);
    s.origin.reset();
    s.origin.unauthorized(1, { challenges: [], body: LOGIN_BODY });
    const first = await login(s.gw, 'username=alice&password=right');
    assert.equal(first.res.status, 200, first.res.text);
    assert.equal(s.origin.count, 2);
    assert.equal(s.token.count, 2);
    const log = await requestLog(s.gw, first.id);
    assert.equal(log.origin_401, 'refusal');
    assert.equal(log.token_refresh, 'after_401');
    s.origin.reset();
    s.origin.unauthorized(2, { challenges: [REFUSAL], body: LOGIN_BODY });
    const second = await login(s.gw);
    assert.equal(second.res.status, 401);
    assert.equal(second.res.text, LOGIN_BODY);
    assert.equal(second.res.headers.get('www-authenticate'), REFUSAL);
  });

  test('off: even a Bearer invalid_token 401 goes back as sent; the token stays', async (t) => {
    const s = await startStack({ bindings: { ROUTES, ORIGIN_TOKEN_REFUSAL: 'off' } });
    t.after(() => s.close());
    assert.equal((await profile(s.gw, s.jwt)).res.status, 200);
    const kvBefore = await s.gw.kvEntries();
    s.origin.reset();
    s.origin.unauthorized(1, { challenges: [REFUSAL], body: 'refused' });
    const { res, id } = await profile(s.gw, s.jwt);
    assert.equal(res.status, 401);
    assert.equal(res.text, 'refused');
    assert.equal(res.headers.get('www-authenticate'), REFUSAL);
    assert.equal(s.origin.count, 1);
    assert.equal(s.token.count, 1);
    assert.deepEqual(await s.gw.kvEntries(), kvBefore);
    const log = await requestLog(s.gw, id);
    assert.equal(log.origin_401, 'passed');
    assert.equal(log.replayed, undefined);
  });

  test('an unknown value: 500 naming the setting, never its value, nothing forwarded', async (t) => {
    const s = await startStack({ bindings: { ROUTES, ORIGIN_TOKEN_REFUSAL: 'sometimes-Zq81' } });
    t.after(() => s.close());
    const { res } = await login(s.gw);
    assert.equal(res.status, 500);
    assert.match(res.json.detail, /ORIGIN_TOKEN_REFUSAL/);
    assert.ok(!res.text.includes('sometimes-Zq81'));
    assert.equal(s.origin.count, 0);
    assert.equal(s.token.count, 0);
  });
});

describe('demo: a wrong password through the gateway', () => {
  let origin, gw;
  before(async () => {
    const config = unstable_readConfig({ config: path.join(ROOT, 'demo/wrangler.toml') });
    origin = await startDemoOrigin({ port: 0, issuer: 'http://127.0.0.1:8788/' });
    gw = (await startStack({ servers: false,
      bindings: {
        ...config.vars,
        ORIGIN_URL: config.vars.ORIGIN_URL.replace('http://127.0.0.1:8788', origin.url),
        TOKEN_URL: config.vars.TOKEN_URL.replace('http://127.0.0.1:8788', origin.url),
        INTROSPECTION_URL: config.vars.INTROSPECTION_URL.replace('http://127.0.0.1:8788', origin.url),
        CLIENT_SECRET: DEMO_CLIENT_SECRET,
        API_KEY: DEMO_API_KEY,
        CUSTOMER_ID_KEY: DEMO_CUSTOMER_ID_KEY,
        GATEWAY_SIGNING_KEY: DEMO_GATEWAY_SIGNING_KEY,
      },
    })).gw;
  });
  after(async () => {
    await gw?.dispose();
    await origin?.close();
  });

  test("gets the origin's 401 and logs no token_refresh after_401; the token stays", async () => {
    const good = await login(gw, 'username=alice&password=alice-password');
    assert.equal(good.res.status, 200, good.res.text);
    const kvBefore = await gw.kvEntries();
    const bad = await login(gw, 'username=alice&password=wrong');
    assert.equal(bad.res.status, 401);
    assert.deepEqual(bad.res.json, { error: 'invalid_credentials', message: 'Unknown user or wrong password.' });
    const log = await requestLog(gw, bad.id);
    assert.equal(log.origin_401, 'passed');
    assert.equal(log.token_source, 'memory', 'the token endpoint was called');
    assert.notEqual(log.token_refresh, 'after_401');
    assert.equal(log.replayed, undefined);
    assert.deepEqual(await gw.kvEntries(), kvBefore);
    const again = await login(gw, 'username=alice&password=alice-password');
    assert.equal(again.res.status, 200);
    assert.equal((await requestLog(gw, again.id)).token_source, 'memory');
  });
});
