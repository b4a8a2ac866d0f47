// JWKS_URL: keys fetched and cached (isolate memory, then KV); an unknown kid triggers at most
// one refetch per 10 s per isolate.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, baseBindings, read, startGateway, tempDir, withJwt } from './harness.mjs';
import { jwks, makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

async function world(t, { kvPersist } = {}) {
  const [origin, token, key, rotated] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256', 'key-2024'),
    makeKey('RS256', 'key-2025'),
  ]);
  const keyServer = await startJwksServer(jwks(key));
  const bindings = baseBindings({ origin, token, key, JWKS_URL: keyServer.url });
  delete bindings.JWT_JWKS;
  const gws = [];
  t.after(async () => {
    for (const g of gws) await g.dispose();
    await Promise.all([origin.close(), token.close(), keyServer.close()]);
  });
  return {
    origin,
    token,
    key,
    rotated,
    keyServer,
    async gateway() {
      const gw = await startGateway({ bindings, kvPersist });
      gws.push(gw);
      return gw;
    },
  };
}

const call = (gw, jwt) => gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt) }).then(read);

async function accepted(gw, jwt, keyServer) {
  const res = await call(gw, jwt);
  assert.equal(res.status, 200, `${res.status} ${res.text} (JWKS fetched ${keyServer.count} times)`);
  return res;
}

describe('JWKS_URL', () => {
  test('keys are fetched once and then served from the isolate', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    const jwt = await signJwt(w.key);
    for (let i = 0; i < 20; i++) await accepted(gw, jwt, w.keyServer);
    assert.equal(w.keyServer.count, 1, `JWKS fetched ${w.keyServer.count} times`);
    assert.equal(w.origin.count, 20);
  });

  test('an unknown kid: 401, and at most one refetch per 10 s however many such tokens arrive', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    await accepted(gw, await signJwt(w.key), w.keyServer);
    const before = w.keyServer.count;
    const stranger = await signJwt(await makeKey('RS256', 'who-is-this'));
    for (let i = 0; i < 10; i++) {
      const res = await call(gw, stranger);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
    assert.ok(w.keyServer.count - before <= 1, `${w.keyServer.count - before} refetches for 10 unknown-kid tokens`);
    assert.equal(w.origin.count, 1);
  });

  test('a rotated key (new kid published) is picked up by the refetch', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    await accepted(gw, await signJwt(w.key), w.keyServer);
    w.keyServer.setKeys(jwks(w.key, w.rotated));
    await accepted(gw, await signJwt(w.rotated), w.keyServer);
    assert.equal(w.keyServer.count, 2);
  });

  test('a second isolate on the same KV gets the keys from KV', async (t) => {
    const kvDir = tempDir();
    t.after(() => kvDir.rm());
    const w = await world(t, { kvPersist: kvDir.dir });
    const jwt = await signJwt(w.key);
    const first = await w.gateway();
    await accepted(first, jwt, w.keyServer);
    await first.dispose();
    const second = await w.gateway();
    await accepted(second, jwt, w.keyServer);
    assert.equal(w.keyServer.count, 1, 'the second isolate fetched the JWKS again');
  });

  test('the JWKS server down and nothing cached: the request is refused, not forwarded', async (t) => {
    const w = await world(t);
    await w.keyServer.close();
    const gw = await w.gateway();
    const res = await call(gw, await signJwt(w.key));
    assert.ok(res.status >= 400, `status ${res.status}`);
    assert.equal(w.origin.count, 0);
  });
});
