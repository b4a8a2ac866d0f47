// ROUTES: segment-boundary prefixes, methods, public routes, per-route origins, and no open proxy.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { API_KEY, read, startStack, withJwt } from './harness.mjs';
import { startOrigin } from './servers.mjs';

describe('routes', () => {
  let stack, origin, token, gw, jwt, other;

  before(async () => {
    other = await startOrigin({ name: 'other' });
    const routes = [
      { prefix: '/auth/customer_authenticate', auth: 'public', methods: ['POST'] },
      { prefix: '/account', auth: 'jwt', methods: ['POST', 'GET'] },
      { prefix: '/reports', origin: other.url },
      { prefix: '/status', auth: 'public' },
    ];
    stack = await startStack({ bindings: { ROUTES: JSON.stringify(routes) } });
    ({ origin, token, gw, jwt } = stack);
  });
  after(async () => {
    await stack?.close();
    await other?.close();
  });
  beforeEach(() => {
    origin.reset();
    other.reset();
  });

  test('/account and /account/x match prefix /account', async () => {
    for (const p of ['/account', '/account/getprofile', '/account/a/b?c=d']) {
      const res = await read(await gw.fetch(p, { method: 'POST', headers: withJwt(jwt) }));
      assert.equal(res.status, 200, `${p}: ${res.text}`);
      assert.equal(origin.last().url, p);
    }
  });

  test('/accounts does not match prefix /account: 404, not forwarded', async () => {
    for (const p of ['/accounts', '/accountsx/getprofile', '/', '/other/path']) {
      const res = await read(await gw.fetch(p, { method: 'POST', headers: withJwt(jwt) }));
      assert.equal(res.status, 404, `${p}: ${res.text}`);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.json?.status, 404);
    }
    assert.equal(origin.count, 0);
    assert.equal(other.count, 0);
  });

  test('dot segments do not escape a route', async () => {
    const res = await gw.raw('/account/../admin/delete', { method: 'POST', headers: withJwt(jwt) });
    assert.equal(res.status, 404, `got ${res.status}: ${res.body}`);
    assert.equal(origin.count, 0);
  });

  test('a method the route does not allow: 405 with Allow, not forwarded', async () => {
    const res = await read(await gw.fetch('/account/getprofile', { method: 'DELETE', headers: withJwt(jwt) }));
    assert.equal(res.status, 405, res.text);
    const allow = (res.headers.get('allow') ?? '').split(',').map((m) => m.trim()).sort();
    assert.deepEqual(allow, ['GET', 'POST']);
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal(origin.count, 0);
  });

  test('a public route forwards without a JWT: authorization and api-key, no customer-auth', async () => {
    const res = await read(
      await gw.fetch('/auth/customer_authenticate', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', 'customer-auth': 'JWT caller-sent-value' },
        body: 'username=alice&password=alice-password',
      }),
    );
    assert.equal(res.status, 200, res.text);
    const seen = origin.last();
    assert.equal(seen.headers.authorization, `Bearer ${token.token}`);
    assert.equal(seen.headers['api-key'], API_KEY);
    assert.equal(seen.headers['customer-auth'], undefined, 'customer-auth reached the origin on a public route');
    assert.equal(seen.body.toString(), 'username=alice&password=alice-password');
  });

  test('a public route does not allow other methods either', async () => {
    const res = await read(await gw.fetch('/auth/customer_authenticate', { method: 'GET' }));
    assert.equal(res.status, 405);
    assert.equal(res.headers.get('allow'), 'POST');
    assert.equal(origin.count, 0);
  });

  test('a jwt route without a JWT: 401, not forwarded', async () => {
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST' }));
    assert.equal(res.status, 401);
    assert.equal(origin.count, 0);
  });

  test('a route-level origin is used (and auth defaults to jwt there)', async () => {
    const res = await read(await gw.fetch('/reports/2024?q=1', { headers: withJwt(jwt) }));
    assert.equal(res.status, 200, res.text);
    assert.equal(other.count, 1);
    assert.equal(origin.count, 0);
    assert.equal(other.last().url, '/reports/2024?q=1');
    assert.equal(other.last().headers['customer-auth'], `JWT ${jwt}`);
    const denied = await read(await gw.fetch('/reports/2024'));
    assert.equal(denied.status, 401, 'auth should default to jwt');
    assert.equal(other.count, 1);
  });

  test('a route without methods accepts any method', async () => {
    for (const method of ['GET', 'POST', 'DELETE']) {
      const res = await read(await gw.fetch('/status', { method }));
      assert.equal(res.status, 200, `${method}: ${res.text}`);
    }
  });
});

describe('routes: invalid ROUTES', () => {
  test('a ROUTES that is not valid JSON is a 500 naming ROUTES', async (t) => {
    const s = await startStack({ bindings: { ROUTES: '[{"prefix": "/a",' } });
    t.after(() => s.close());
    const res = await read(await s.gw.fetch('/a', { headers: withJwt(s.jwt) }));
    assert.equal(res.status, 500);
    assert.match(res.json?.detail ?? '', /ROUTES/);
    assert.equal(s.origin.count, 0);
  });
});
