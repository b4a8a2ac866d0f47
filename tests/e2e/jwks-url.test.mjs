// JWKS_URL: keys fetched and cached (isolate memory, then KV); an unknown kid triggers at most
// one refetch per 10 s per isolate.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, baseBindings, read, scheduled, startStack, tempDir, waitFor, withJwt } from './harness.mjs';
import { jwks, makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

async function world(t, { kvPersist, cacheControl } = {}) {
  const [origin, token, key, rotated] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256', 'key-2024'),
    makeKey('RS256', 'key-2025'),
  ]);
  const keyServer = await startJwksServer(jwks(key), { cacheControl });
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
      const gw = (await startStack({ servers: false, bindings, kvPersist })).gw;
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

  test('a repeated token is verified once, then served from the isolate memory', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    const jwt = await signJwt(w.key);
    for (let i = 0; i < 5; i++) await accepted(gw, jwt, w.keyServer);
    // Another token (same key and claims, another jti) is a string of its own.
    await accepted(gw, await signJwt(w.key, { claims: { jti: 'another' } }), w.keyServer);
    const logs = await gw.waitForRequestLogs(6);
    assert.deepEqual(
      logs.map((l) => l.jwt_check),
      ['signature', 'cache', 'cache', 'cache', 'cache', 'signature'],
    );
    assert.equal(logs[0].jwks, 'endpoint', 'the first request says it fetched the key set');
    assert.equal(logs[1].jwks, undefined);
  });

  test('200 requests with random unknown kids: one refetch at most, all 401, the origin never reached', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    await accepted(gw, await signJwt(w.key), w.keyServer);
    const before = w.keyServer.count;
    const strangers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => makeKey('RS256', `made-up-${i}`)),
    );
    for (let batch = 0; batch < 10; batch++) {
      const tokens = await Promise.all(
        Array.from({ length: 20 }, (_, i) => {
          const key = strangers[(batch + i) % strangers.length];
          return signJwt({ ...key, kid: `made-up-${batch}-${i}-${Math.random().toString(36).slice(2)}` });
        }),
      );
      const results = await Promise.all(tokens.map((jwt) => call(gw, jwt)));
      for (const res of results) {
        assert.equal(res.status, 401);
        assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      }
    }
    assert.ok(w.keyServer.count - before <= 1, `${w.keyServer.count - before} JWKS fetches for 200 unknown kids`);
    assert.equal(w.origin.count, 1);
  });

  test('the JWKS server failing with a warm cache: known keys keep serving, the failure is logged', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    await accepted(gw, await signJwt(w.key), w.keyServer);
    w.keyServer.setDown(true);
    // An unknown kid makes the gateway try the server, which fails: nobody can say whether the
    // key exists, so 503, not a 401 blaming the caller.
    const stranger = await signJwt(await makeKey('RS256', 'not-published'));
    const refused = await call(gw, stranger);
    assert.equal(refused.status, 503, refused.text);
    assert.match(refused.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    assert.equal(w.keyServer.count, 2, 'the refetch was attempted');
    for (let i = 0; i < 10; i++) await accepted(gw, await signJwt(w.key), w.keyServer);
    const logs = await gw.waitForRequestLogs(12);
    assert.equal(logs[1].jwks, 'jwks_status', 'the failed fetch is in the log line');
    assert.equal(w.origin.count, 11);
  });

  test('the scheduled handler refreshes the key set before it goes stale, and a removed key stops working', async (t) => {
    const w = await world(t);
    const gw = await w.gateway();
    const oldJwt = await signJwt(w.key);
    assert.equal((await scheduled(gw)).outcome, 'ok');
    assert.equal(w.keyServer.count, 1, 'the cron run fetched the set');
    await accepted(gw, oldJwt, w.keyServer);
    assert.equal(w.keyServer.count, 1, 'the request found it in memory');

    // The provider rotates: the new key in, the old key out. The set (max-age=300) goes stale
    // within the cron's look-ahead, so the next run fetches it.
    w.keyServer.setKeys(jwks(w.rotated));
    assert.equal((await scheduled(gw)).outcome, 'ok');
    assert.equal(w.keyServer.count, 2);
    await accepted(gw, await signJwt(w.rotated), w.keyServer);
    const res = await call(gw, oldJwt);
    assert.equal(res.status, 401, 'a token verified before is refused once its key has left');
    const task = await waitFor(() => gw.jsonLogs().find((l) => l.event === 'scheduled' && l.jwks));
    assert.equal(task.jwks, 'endpoint');
  });

  test('a key set the provider marks fresh for a day is not refreshed by the cron', async (t) => {
    const w = await world(t, { cacheControl: 'public, max-age=86400' });
    const gw = await w.gateway();
    await accepted(gw, await signJwt(w.key), w.keyServer);
    for (let i = 0; i < 3; i++) assert.equal((await scheduled(gw)).outcome, 'ok');
    assert.equal(w.keyServer.count, 1);
  });

  test('a key set over 256 KiB is refused (503, nothing forwarded) and the failure is logged', async (t) => {
    const w = await world(t);
    w.keyServer.setKeys({ ...jwks(w.key), padding: 'x'.repeat(300 * 1024) });
    const gw = await w.gateway();
    const res = await call(gw, await signJwt(w.key));
    assert.equal(res.status, 503);
    assert.ok(Number(res.headers.get('retry-after')) >= 1);
    assert.equal(res.headers.get('content-type'), 'application/problem+json');
    assert.equal(w.origin.count, 0);
    const [log] = await gw.waitForRequestLogs(1);
    assert.equal(log.jwks, 'jwks_too_large');
    assert.equal(log.outcome, 'jwks_too_large');
  });
});
