// METRICS through the built Worker: the data points of a few requests and of a scheduled run,
// exactly (blob by blob); a dataset that throws fails nothing; the request line's colo, ray and
// upstream; and no point carries a JWT, an access token, a secret, a sub or a query.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, ISSUER, baseBindings, sleep, withJwt } from './harness.mjs';
import { startMeteredGateway } from './metrics-recorder.mjs';
import { makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint, jwks } from './servers.mjs';

const ROUTES = [
  { prefix: '/public', auth: 'public' },
  { prefix: '/account/', auth: 'jwt' },
];

async function stack(t, { mode = 'record' } = {}) {
  const [origin, token, key] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256'),
  ]);
  const keys = await startJwksServer(jwks(key));
  const bindings = baseBindings({ origin, token, key, ROUTES: JSON.stringify(ROUTES), JWKS_URL: keys.url });
  delete bindings.JWT_JWKS;
  const gw = await startMeteredGateway({ bindings, mode });
  t.after(async () => {
    await gw.dispose();
    await Promise.all([origin.close(), token.close(), keys.close()]);
  });
  return { gw, origin, token, key, keys, jwt: await signJwt(key, { claims: { sub: 'Pl4nted-sub' } }) };
}

const request = (gw, p, { id, headers = {}, method = 'GET', colo = 'AMS' } = {}) =>
  gw.fetch(p, { method, headers: { 'x-request-id': id, 'cf-ray': `8f1a2b3c4d5e6f70-${colo}`, ...headers }, cf: { colo } });

describe('METRICS', () => {
  test('one point per request and per dependency event, blob by blob; the line has colo, ray, upstream', async (t) => {
    const { gw, jwt, key, origin } = await stack(t);
    const forged = await signJwt(await makeKey('RS256', key.kid));
    const plan = [
      ['m-first', '/account/getprofile?access_token=Pl4nted-query', withJwt(jwt), 200],
      ['m-again', '/account/getprofile', withJwt(jwt), 200],
      ['m-forged', '/account/getprofile', withJwt(forged), 401],
      ['m-public', '/public/ping', {}, 200],
      ['m-none', '/nowhere', withJwt(jwt), 404],
    ];
    for (const [id, p, headers, status] of plan) {
      const res = await request(gw, p, { id, headers });
      await res.arrayBuffer();
      assert.equal(res.status, status, id);
    }
    // 5 request points, and for the first: the key set fetch and the token endpoint call.
    const points = await gw.waitForPoints(7);
    await sleep(100);
    assert.equal(gw.points().length, 7, JSON.stringify(gw.points(), null, 1));

    const requests = points.filter((p) => !p.blobs[0].startsWith('event:'));
    const events = points.filter((p) => p.blobs[0].startsWith('event:'));
    assert.deepEqual(requests.map((p) => p.indexes), [['/account/'], ['/account/'], ['/account/'], ['/public'], ['-']]);
    assert.deepEqual(requests.map((p) => p.blobs), [
      ['forwarded', '/account/', 'GET', 'jwt', 'endpoint', 'signature', ISSUER, 'AMS', '-'],
      ['forwarded', '/account/', 'GET', 'jwt', 'memory', 'cache', ISSUER, 'AMS', '-'],
      ['bad_signature', '/account/', 'GET', 'jwt', '-', '-', '-', 'AMS', '-'],
      ['forwarded', '/public', 'GET', '-', 'memory', '-', '-', 'AMS', '-'],
      ['no_route', '-', 'GET', '-', '-', '-', '-', 'AMS', '-'],
    ]);
    assert.deepEqual(requests.map((p) => p.doubles[0]), [200, 200, 401, 200, 404]);
    for (const p of requests) {
      assert.equal(p.doubles.length, 5);
      assert.ok(p.doubles.every((d) => Number.isFinite(d) && d >= 0), JSON.stringify(p.doubles));
    }
    assert.deepEqual(events.map((p) => [p.indexes[0], ...p.blobs]), [
      ['event:jwks_fetch', 'event:jwks_fetch', 'ok', 'request', 'endpoint', '/account/', 'AMS'],
      ['event:token_refresh', 'event:token_refresh', 'ok', 'request', 'endpoint', '/account/', 'AMS'],
    ]);

    const lines = await gw.waitForRequestLogs(plan.length);
    const line = (id) => lines.find((l) => l.request_id === id);
    assert.equal(line('m-first').colo, 'AMS');
    assert.equal(line('m-first').ray, '8f1a2b3c4d5e6f70');
    const host = new URL(origin.url).host;
    assert.equal(line('m-first').upstream, `${host}/account/getprofile`, 'host and path, never the query');
    assert.equal(line('m-public').upstream, `${host}/public/ping`);
    assert.equal(line('m-none').upstream, undefined, 'sent nowhere');
    assert.equal(typeof line('m-first').auth_ms, 'number');

    // A cf-ray that is not an id is left out, not copied.
    const odd = [
      ['r-dot', `${jwt.slice(0, 20)}.x-AMS`],
      ['r-long', `${'a'.repeat(33)}-AMS`],
      ['r-empty', '-AMS'],
    ];
    for (const [id, ray] of odd) {
      const res = await gw.fetch('/public/ping', { headers: { 'x-request-id': id, 'cf-ray': ray } });
      await res.arrayBuffer();
    }
    const more = await gw.waitForRequestLogs(plan.length + odd.length);
    for (const [id] of odd) {
      const l = more.find((x) => x.request_id === id);
      assert.equal(l.ray, undefined, id);
    }

    for (const secret of [jwt, jwt.split('.')[2], forged, CLIENT_SECRET, API_KEY, 'Pl4nted-sub', 'Pl4nted-query']) {
      assert.ok(!JSON.stringify(gw.points()).includes(secret), `a point carries ${secret.slice(0, 12)}…`);
    }
  });

  test('the scheduled run writes its token refresh and key set fetch, then their failures', async (t) => {
    const { gw, keys, token } = await stack(t);
    assert.equal((await gw.scheduled()).outcome, 'ok');
    await gw.waitForPoints(2);
    await sleep(100);
    assert.deepEqual(gw.points().map((p) => [p.indexes[0], ...p.blobs, ...p.doubles.slice(0, 1)]), [
      ['event:token_refresh', 'event:token_refresh', 'ok', 'scheduled', 'endpoint', '-', '-', 0],
      ['event:jwks_fetch', 'event:jwks_fetch', 'ok', 'scheduled', 'endpoint', '-', '-', 0],
    ]);
    // The next run: the token is fresh (nothing called); the key set (max-age 300 s, within
    // the run's 10 minutes ahead) is refetched, and its server is down.
    keys.setDown(true);
    assert.equal((await gw.scheduled()).outcome, 'ok');
    await gw.waitForPoints(4);
    await sleep(100);
    assert.deepEqual(gw.points().slice(2).map((p) => p.blobs.slice(0, 4)), [
      ['event:token_refresh', 'fresh', 'scheduled', '-'],
      ['event:jwks_fetch', 'jwks_status', 'scheduled', 'endpoint'],
    ]);
    assert.equal(token.calls.length, 1);
    assert.equal(keys.count, 2);
  });

  test('a dataset whose writeDataPoint throws fails no request and no scheduled run', async (t) => {
    const { gw, jwt } = await stack(t, { mode: 'throw' });
    for (const [id, p, headers, status] of [
      ['t-ok', '/account/getprofile', withJwt(jwt), 200],
      ['t-refused', '/account/getprofile', {}, 401],
      ['t-public', '/public/x', {}, 200],
    ]) {
      const res = await request(gw, p, { id, headers });
      await res.arrayBuffer();
      assert.equal(res.status, status, id);
    }
    assert.equal((await gw.scheduled()).outcome, 'ok');
    const lines = await gw.waitForRequestLogs(3);
    assert.deepEqual(lines.map((l) => l.status), [200, 401, 200]);
    assert.equal(gw.points().length, 0);
    // Every write was attempted, and threw: 3 requests, 2 of their events, 2 of the run's.
    assert.deepEqual(gw.throws(), [
      'forwarded', 'event:jwks_fetch', 'event:token_refresh',
      'missing_token',
      'forwarded',
      'event:token_refresh', 'event:jwks_fetch',
    ]);
    assert.ok(!gw.output().includes('dataset unavailable'), 'the throw is dropped, not logged');
  });
});
