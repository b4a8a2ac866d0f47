// Requests whose customer JWT is missing or invalid: 401 problem+json, and the origin (and the
// token endpoint) never hear of them.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { AUDIENCE, read, startStack, withJwt } from './harness.mjs';
import { makeKey, nowSecs, signHs256, signJwt, unsignedJwt } from './servers.mjs';

const REALM = 'Bearer realm="edge-auth-proxy"';

function assertProblem(res, status, requestId) {
  assert.equal(res.status, status, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.ok(res.json, `not JSON: ${res.text}`);
  for (const field of ['type', 'title', 'detail', 'request_id']) {
    assert.equal(typeof res.json[field], 'string', `problem field ${field}: ${res.text}`);
  }
  assert.equal(res.json.status, status);
  if (requestId) assert.equal(res.json.request_id, requestId);
}

describe('401: invalid or missing customer JWT', () => {
  let stack, origin, token, gw, key, other;

  before(async () => {
    stack = await startStack();
    ({ origin, token, gw, key } = stack);
    // Same kid as the trusted key, different key material: a forged signature.
    other = await makeKey('RS256', key.kid);
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  test('no token at all: 401 with a bare Bearer challenge', async () => {
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'x-request-id': 'no-token-1' } }));
    assertProblem(res, 401, 'no-token-1');
    assert.equal(res.headers.get('www-authenticate'), REALM);
    assert.equal(origin.count, 0);
    assert.equal(token.count, 0, 'no access token is fetched for a request that will be refused');
  });

  const now = nowSecs();
  const cases = {
    'bad signature': () => signJwt(other),
    'expired (beyond the leeway)': () => signJwt(key, { claims: { iat: now - 7200, exp: now - 600 } }),
    'not yet valid (nbf beyond the leeway)': () => signJwt(key, { claims: { nbf: now + 600 } }),
    'no exp': () => signJwt(key, { claims: { exp: undefined } }),
    'wrong aud': () => signJwt(key, { audience: 'another-api' }),
    'wrong iss': () => signJwt(key, { issuer: 'https://evil.example/' }),
    'alg none': () => unsignedJwt({ header: { kid: key.kid } }),
    'alg None (odd case)': () => unsignedJwt({ header: { alg: 'None', kid: key.kid } }),
    'HS256 when only RS256 is allowed': () => signHs256('some-shared-secret', { header: { kid: key.kid } }),
    // The classic confusion: HS256 keyed with the RSA public key's JWK text.
    'HS256 keyed with the RSA public key': () => signHs256(JSON.stringify(key.publicJwk), { header: { kid: key.kid } }),
    'unknown kid': async () => signJwt(await makeKey('RS256', 'no-such-kid')),
    'malformed (not three segments)': async () => 'not.a.jwt.at.all',
    'garbage': async () => 'eyJhbGciOi',
  };

  for (const [name, make] of Object.entries(cases)) {
    test(`${name}: 401 invalid_token, origin not reached, token not echoed`, async () => {
      const bad = await make();
      const id = `bad-${name.replace(/[^a-z0-9]+/gi, '-')}`;
      const res = await read(
        await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(bad, { 'x-request-id': id }), body: '{}' }),
      );
      assertProblem(res, 401, id);
      const challenge = res.headers.get('www-authenticate') ?? '';
      assert.ok(challenge.startsWith(`${REALM}, `), `WWW-Authenticate: ${challenge}`);
      assert.match(challenge, /error="invalid_token"/);
      assert.equal(origin.count, 0, 'the origin was reached');
      assert.ok(!res.text.includes(bad), 'the token is echoed in the body');
      for (const part of bad.split('.').filter((p) => p.length > 8)) {
        assert.ok(!res.text.includes(part), 'a token segment is echoed in the body');
        assert.ok(!challenge.includes(part), 'a token segment is echoed in WWW-Authenticate');
      }
    });
  }

  test('the same invalid token as Authorization: Bearer is refused the same way', async () => {
    const bad = await signJwt(other);
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: { authorization: `Bearer ${bad}` } }));
    assertProblem(res, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    assert.equal(origin.count, 0);
  });

  test('a token within the leeway is accepted (exp 30 s ago, leeway 60 s)', async () => {
    const ok = await signJwt(key, { claims: { exp: nowSecs() - 30 } });
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(ok) }));
    assert.equal(res.status, 200, res.text);
    assert.equal(origin.count, 1);
  });

  test('aud as an array containing the audience is accepted', async () => {
    const ok = await signJwt(key, { audience: ['other', AUDIENCE] });
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(ok) }));
    assert.equal(res.status, 200, res.text);
  });
});
