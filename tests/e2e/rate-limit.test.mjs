// A route's rate_limit through the built Worker with Miniflare's rate-limiting bindings: the limit
// reached by one `sub` is 429 problem+json with Retry-After and never forwarded, while another
// `sub` is served; `ip` counts by cf-connecting-ip; a binding named in ROUTES but not bound is a
// 500 naming ROUTES.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, baseBindings, read, withJwt } from './harness.mjs';
import { startFleet } from './fleet.mjs';
import { makeKey, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';

const ROUTES = JSON.stringify([
  { prefix: '/account/', auth: 'jwt', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } },
  { prefix: '/login', auth: 'public', rate_limit: { binding: 'PER_IP', key: 'ip' } },
  { prefix: '/org/', auth: 'jwt', rate_limit: { binding: 'PER_ORG', key: 'org.id' } },
]);

async function stack(t, routes = ROUTES) {
  const [origin, token, key] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256'),
  ]);
  const fleet = await startFleet({
    bindings: baseBindings({ origin, token, key, ROUTES: routes }),
    n: 1,
    coordinator: false,
    workerOptions: {
      ratelimits: {
        PER_CUSTOMER: { simple: { limit: 3, period: 60 } },
        PER_IP: { simple: { limit: 2, period: 60 } },
        PER_ORG: { simple: { limit: 2, period: 60 } },
      },
    },
  });
  t.after(async () => {
    await fleet.dispose();
    await Promise.all([origin.close(), token.close()]);
  });
  return { origin, token, fleet, key };
}

describe('rate limits', () => {
  test('the limit reached by one sub is 429 and not forwarded while another sub is served', async (t) => {
    const s = await stack(t);
    const [alice, bob] = await Promise.all([signJwt(s.key, { claims: { sub: 'alice' } }), signJwt(s.key, { claims: { sub: 'bob' } })]);
    const get = async (jwt) => read(await s.fleet.fetch(0, '/account/getprofile', { headers: withJwt(jwt) }));
    for (let i = 0; i < 3; i++) assert.equal((await get(alice)).status, 200);
    const seen = s.origin.count;
    const limited = await get(alice);
    assert.equal(limited.status, 429, limited.text);
    assert.equal(limited.headers.get('content-type'), 'application/problem+json');
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal(limited.json.status, 429);
    assert.equal(s.origin.count, seen, 'the limited request never reached the origin');
    assert.equal((await get(bob)).status, 200);
    assert.equal(s.origin.count, seen + 1);
  });

  test('ip counts by cf-connecting-ip', async (t) => {
    const s = await stack(t);
    const login = async (ip) =>
      (await s.fleet.fetch(0, '/login', { method: 'POST', headers: { 'cf-connecting-ip': ip }, body: 'u=a' })).status;
    assert.equal(await login('203.0.113.7'), 200);
    assert.equal(await login('203.0.113.7'), 200);
    assert.equal(await login('203.0.113.7'), 429);
    assert.equal(await login('198.51.100.1'), 200);
  });

  test('a claim-path key (org.id) counts every customer of one organisation together', async (t) => {
    const s = await stack(t);
    const member = (sub, org) => signJwt(s.key, { claims: { sub, org: { id: org } } });
    const [a, b, c, d] = await Promise.all([member('alice', 'acme'), member('bob', 'acme'), member('carol', 'acme'), member('dave', 'globex')]);
    const get = async (jwt) => (await s.fleet.fetch(0, '/org/report', { headers: withJwt(jwt) })).status;
    assert.equal(await get(a), 200);
    assert.equal(await get(b), 200);
    const seen = s.origin.count;
    assert.equal(await get(c), 429, 'a third acme customer within the period');
    assert.equal(s.origin.count, seen, 'the limited request never reached the origin');
    assert.equal(await get(d), 200, 'another organisation has its own bucket');
  });

  test('a binding named in ROUTES but not bound is a configuration error: 500 naming ROUTES, on every route', async (t) => {
    const s = await stack(t, JSON.stringify([...JSON.parse(ROUTES), { prefix: '/unbound/', auth: 'jwt', rate_limit: { binding: 'NOT_BOUND', key: 'sub' } }]));
    const jwt = await signJwt(s.key, { claims: { sub: 'alice' } });
    for (const path of ['/unbound/x', '/account/x']) {
      const res = await read(await s.fleet.fetch(0, path, { headers: withJwt(jwt) }));
      assert.equal(res.status, 500);
      assert.match(res.json.detail, /ROUTES\[3\]\.rate_limit\.binding/);
      assert.match(res.json.detail, /NOT_BOUND/);
    }
    assert.equal(s.origin.count, 0);
  });
});
