// Dependencies that fail, and recover, against the built Worker: a token endpoint, a key set
// and an introspection endpoint that die, lie and come back (loopback servers). Written as an
// attacker's checklist: while a dependency backs off, a burst costs it a probe, not a call per
// request, and every request gets 503 with Retry-After; the first good answer serves the next
// request at once; a key rotated in during a key-set outage is 503 (the gateway's keys are
// missing), never 401, and accepted as soon as the set is back; a bad introspection answer about
// one session refuses that session only.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, ISSUER, baseBindings, read, startStack, withJwt } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { jwks, makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

const call = (gw, headers) => gw.fetch('/account/getprofile', { method: 'POST', headers, body: '{}' }).then(read);

function assertUnavailable(res, type, what = '') {
  assert.equal(res.status, 503, `${what} ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.match(res.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/, `${what} Retry-After`);
  assert.ok(res.json.type.endsWith(type), `${what} ${res.json.type}`);
}

describe('dependencies that fail, and recover', () => {
  for (const mode of ['500', 'garbage', 'down']) {
    test(`token endpoint (${mode}), nothing cached: one probe per burst, 503 meanwhile, served as soon as it is back`, async (t) => {
      const s = await startStack({ tokenOptions: { mode } });
      t.after(() => s.close());
      assertUnavailable(await call(s.gw, withJwt(s.jwt)), 'upstream-credentials', 'first');
      const before = s.token.count;
      const burst = await Promise.all(Array.from({ length: 20 }, () => call(s.gw, withJwt(s.jwt))));
      for (const res of burst) assertUnavailable(res, 'upstream-credentials', 'burst');
      const probes = s.token.count - before;
      assert.ok(probes <= 2, `${probes} token calls for a burst of 20`);
      assert.equal(s.origin.count, 0);
      // Back: the very next request is served, there is no back-off to wait out.
      s.token.setMode('ok');
      const res = await call(s.gw, withJwt(s.jwt));
      assert.equal(res.status, 200, res.text);
      const after = await Promise.all(Array.from({ length: 10 }, () => call(s.gw, withJwt(s.jwt))));
      assert.deepEqual(after.map((r) => r.status), Array(10).fill(200));
    });
  }

  test('a key rotated in while the key set is down: 503, never 401 unknown_kid; accepted as soon as the set is back', async (t) => {
    const [origin, token, key, rotated] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      makeKey('RS256', 'key-2026'),
      makeKey('RS256', 'key-2027'),
    ]);
    const keyServer = await startJwksServer(jwks(key));
    const { JWT_JWKS: _inline, ...bindings } = baseBindings({ origin, token, key });
    const gw = (await startStack({ servers: false, bindings: { ...bindings, JWKS_URL: keyServer.url } })).gw;
    t.after(async () => {
      await gw.dispose();
      await Promise.all([origin.close(), token.close(), keyServer.close()]);
    });
    const [oldJwt, newJwt] = await Promise.all([signJwt(key), signJwt(rotated)]);
    assert.equal((await call(gw, withJwt(oldJwt))).status, 200);

    keyServer.setKeys(jwks(key, rotated));
    keyServer.setDown(true);
    const during = await Promise.all(Array.from({ length: 10 }, () => call(gw, withJwt(newJwt))));
    for (const res of during) {
      assertUnavailable(res, 'key-set-unavailable', 'new kid during the outage');
      assert.equal(res.headers.get('www-authenticate'), null, 'the caller is not told its token is invalid');
    }
    assert.equal((await call(gw, withJwt(oldJwt))).status, 200, 'the held keys still serve');

    keyServer.setDown(false);
    const res = await call(gw, withJwt(newJwt));
    assert.equal(res.status, 200, `new kid after recovery: ${res.status} ${res.text}`);
    assert.equal(origin.count, 3);
  });

  test('a bad introspection answer refuses that session only; the endpoint down and back', async (t) => {
    const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
    const s = await startStack({
      bindings: { ROUTES: JSON.stringify([{ prefix: '/account', auth: 'opaque' }]), INTROSPECTION_URL: idp.url },
    });
    t.after(async () => {
      await s.close();
      await idp.close();
    });
    const session = (id) => ({ 'customer-auth': `Session ${id}` });
    const bad = [
      idp.login('too-large', { blob: 'x'.repeat(20_000) }),
      idp.login('bad-exp', { exp: 'soon' }),
      idp.login('negative-exp', { exp: -1 }),
      idp.login('bad-nbf', { nbf: 'later' }),
      idp.login('string-active', { active: 'true' }),
      idp.login('numeric-active', { active: 1 }),
    ];
    for (const id of bad) {
      // The bad one and a good one at the same moment.
      const [refused, served] = await Promise.all([call(s.gw, session(id)), call(s.gw, session(idp.login('good')))]);
      assert.equal(refused.status, 401, `${id}: ${refused.status} ${refused.text}`);
      assert.match(refused.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      assert.equal(served.status, 200, `a good session next to ${id}: ${served.status} ${served.text}`);
    }
    // Nothing backed off: yet another new session is served.
    assert.equal((await call(s.gw, session(idp.login('later')))).status, 200);

    // The endpoint itself fails: 503 for new sessions, one probe per burst.
    idp.setMode('500');
    assertUnavailable(await call(s.gw, session(idp.login('during-1'))), 'introspection-unavailable', 'first');
    const before = idp.count;
    const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => call(s.gw, session(idp.login(`burst-${i}`)))));
    for (const res of burst) assertUnavailable(res, 'introspection-unavailable', 'burst');
    assert.ok(idp.count - before <= 2, `${idp.count - before} introspection calls for a burst of 10`);
    // Back: the next new session is served at once.
    idp.setMode('ok');
    const res = await call(s.gw, session(idp.login('after')));
    assert.equal(res.status, 200, `${res.status} ${res.text}`);
  });
});
