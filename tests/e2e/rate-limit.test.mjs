// A route's rate_limit through the built Worker with Miniflare's rate-limiting bindings: the limit
// reached by one `sub` is 429 problem+json with Retry-After and never forwarded, while another
// `sub` is served; `ip` counts by cf-connecting-ip; a binding named in ROUTES but not bound is a
// 500 naming ROUTES. Issue 17: the same `sub` from two providers is two buckets; requests
// without the key's value are counted per address, never in one bucket; an `ip` limit is
// counted before the identifier is verified or introspected, and counts preflights.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { randomBytes } from 'node:crypto';

import { CLIENT_ID, CLIENT_SECRET, ISSUER, baseBindings, read, startStack, withJwt } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { jwks, makeKey, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';

const ROUTES = JSON.stringify([
  { prefix: '/account/', auth: 'jwt', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } },
  { prefix: '/login', auth: 'public', rate_limit: { binding: 'PER_IP', key: 'ip' } },
  { prefix: '/org/', auth: 'jwt', rate_limit: { binding: 'PER_ORG', key: 'org.id' } },
]);

const LIMITS = {
  PER_CUSTOMER: { simple: { limit: 3, period: 60 } },
  PER_IP: { simple: { limit: 2, period: 60 } },
  PER_ORG: { simple: { limit: 2, period: 60 } },
};

/** One isolate with `routes` and the `ratelimits` given; `bindings` over the base ones. */
async function stack(t, { routes = ROUTES, ratelimits = LIMITS, bindings = {}, idp } = {}) {
  const [origin, token, key] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256'),
  ]);
  const all = { ...baseBindings({ origin, token, key, ROUTES: routes }), ...bindings };
  for (const [name, value] of Object.entries(all)) if (value === undefined) delete all[name];
  const fleet = (await startStack({ servers: false, size: 1, coordinator: false, bindings: all, workerOptions: { ratelimits } })).fleet;
  t.after(async () => {
    await fleet.dispose();
    await Promise.all([origin.close(), token.close(), idp?.close()]);
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
    const s = await stack(t, { routes: JSON.stringify([...JSON.parse(ROUTES), { prefix: '/unbound/', auth: 'jwt', rate_limit: { binding: 'NOT_BOUND', key: 'sub' } }]) });
    const jwt = await signJwt(s.key, { claims: { sub: 'alice' } });
    for (const path of ['/unbound/x', '/account/x']) {
      const res = await read(await s.fleet.fetch(0, path, { headers: withJwt(jwt) }));
      assert.equal(res.status, 500);
      assert.match(res.json.detail, /ROUTES\[3\]\.rate_limit\.binding/);
      assert.match(res.json.detail, /NOT_BOUND/);
    }
    assert.equal(s.origin.count, 0);
  });

  test('the same sub from two providers is two buckets', async (t) => {
    const [a, b] = await Promise.all([makeKey('ES256', 'a-1'), makeKey('ES256', 'b-1')]);
    const A = 'https://a.example/';
    const B = 'https://b.example/';
    const providers = [
      { issuer: A, jwks: jwks(a), algorithms: ['ES256'] },
      { issuer: B, jwks: jwks(b), algorithms: ['ES256'] },
    ];
    const s = await stack(t, {
      routes: JSON.stringify([{ prefix: '/account/', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } }]),
      bindings: { JWT_PROVIDERS: JSON.stringify(providers), JWT_ALGORITHMS: 'ES256', JWT_JWKS: undefined, JWT_ISSUER: undefined, JWT_AUDIENCE: undefined },
    });
    const [aliceOfA, aliceOfB] = await Promise.all([
      signJwt(a, { issuer: A, claims: { sub: 'alice' } }),
      signJwt(b, { issuer: B, claims: { sub: 'alice' } }),
    ]);
    const get = async (jwt) => (await s.fleet.fetch(0, '/account/x', { headers: { ...withJwt(jwt), 'cf-connecting-ip': '203.0.113.1' } })).status;
    for (let i = 0; i < 3; i++) assert.equal(await get(aliceOfB), 200);
    assert.equal(await get(aliceOfB), 429, "B's alice is over her limit");
    assert.equal(await get(aliceOfA), 200, "A's alice, another person, is not");
  });

  test('requests without the key\'s value are counted per address, never in one shared bucket', async (t) => {
    const s = await stack(t, {
      routes: JSON.stringify([{ prefix: '/report/', auth: 'report', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } }]),
    });
    const anonymous = async (ip) => (await s.fleet.fetch(0, '/report/x', { headers: { 'cf-connecting-ip': ip } })).status;
    for (let i = 0; i < 8; i++) assert.equal(await anonymous(`198.51.100.${i}`), 200, `anonymous caller ${i}`);
    for (let i = 0; i < 3; i++) assert.equal(await anonymous('203.0.113.9'), 200);
    assert.equal(await anonymous('203.0.113.9'), 429, 'one address is limited');
    assert.equal(await anonymous('203.0.113.10'), 200, 'and only that one');
    // A caller with a sub has its own bucket, apart from its address's.
    const jwt = await signJwt(s.key, { claims: { sub: 'alice' } });
    const res = await s.fleet.fetch(0, '/report/x', { headers: { ...withJwt(jwt), 'cf-connecting-ip': '203.0.113.9' } });
    assert.equal(res.status, 200);
  });

  test('an ip limit is counted before introspection: 200 random session ids cost at most the limit', async (t) => {
    const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
    const s = await stack(t, {
      idp,
      routes: JSON.stringify([{ prefix: '/session/', auth: 'opaque', rate_limit: { binding: 'PER_IP', key: 'ip' } }]),
      ratelimits: { PER_IP: { simple: { limit: 5, period: 60 } } },
      bindings: { INTROSPECTION_URL: idp.url, SESSION_COOKIE: 'sid' },
    });
    const statuses = [];
    for (let batch = 0; batch < 10; batch++) {
      const sent = Array.from({ length: 20 }, () =>
        s.fleet
          .fetch(0, '/session/x', { headers: { cookie: `sid=${randomBytes(12).toString('hex')}`, 'cf-connecting-ip': '203.0.113.77' } })
          .then(async (r) => (await r.arrayBuffer(), r.status)),
      );
      statuses.push(...(await Promise.all(sent)));
    }
    assert.equal(statuses.filter((x) => x === 429).length, 195, JSON.stringify(statuses));
    assert.equal(statuses.filter((x) => x === 401).length, 5);
    assert.equal(idp.count, 5, 'introspection calls');
    assert.equal(s.origin.count, 0);
  });

  test('an ip limit counts preflights', async (t) => {
    const s = await stack(t, {
      routes: JSON.stringify([{ prefix: '/cors/', cors_preflight: 'forward', rate_limit: { binding: 'PER_IP', key: 'ip' } }]),
    });
    // Through Miniflare's own dispatch (one isolate: the first worker): the worker handle's
    // fetch refuses a cross-origin `Origin` header before the Worker sees it.
    const preflight = async (ip) =>
      (
        await read(
          await s.fleet.mf.dispatchFetch('http://gateway.test/cors/x', {
            method: 'OPTIONS',
            headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'cf-connecting-ip': ip },
          }),
        )
      ).status;
    assert.equal(await preflight('203.0.113.5'), 200);
    assert.equal(await preflight('203.0.113.5'), 200);
    assert.equal(await preflight('203.0.113.5'), 429);
    assert.equal(s.origin.count, 2, 'the limited preflight was not forwarded');
    assert.equal(await preflight('198.51.100.5'), 200);
  });
});
