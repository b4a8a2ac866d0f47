// The gateway assertion (issue 22), end to end: the built Worker signs it in WebCrypto, a
// loopback origin checks it with the reference's own recipe (docs/recipes/gateway-assertion.mjs,
// jose) against the gateway's own key-set endpoint, on jwt, opaque and public routes, with an
// ES256 and an Ed25519 key. A caller's copy never arrives, the key-set path is never routed or
// forwarded, no two requests share a jti, and an assertion replayed with another method or path
// fails the recipe.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';

import { decodeJwt, decodeProtectedHeader } from 'jose';

import { gatewayAssertionChecker } from '../../docs/recipes/gateway-assertion.mjs';
import { CLIENT_ID, CLIENT_SECRET, ISSUER, baseBindings, startGateway, startStack, withJwt } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { signJwt } from './servers.mjs';

const KEYS = JSON.parse(readFileSync(new URL('../fixtures/signing-keys.json', import.meta.url), 'utf8'));
const JWKS_PATH = '/.well-known/edge-auth-proxy/jwks.json';
const HEADER = 'x-gateway-assertion';
const ROUTES = JSON.stringify([
  { prefix: '/public', auth: 'public' },
  { prefix: '/session', auth: 'opaque' },
  { prefix: '/account', auth: 'jwt' },
  // A catch-all: the key-set path must not fall into it.
  { prefix: '/', auth: 'public' },
]);

const nowSecs = () => Math.floor(Date.now() / 1000);

async function startAssertingStack(signingKey) {
  const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
  const stack = await startStack({
    bindings: {
      ROUTES,
      INTROSPECTION_URL: idp.url,
      SESSION_COOKIE: 'sid',
      GATEWAY_ASSERTION_HEADER: HEADER,
      GATEWAY_SIGNING_KEY: JSON.stringify(signingKey),
    },
  });
  // The caller reaches the gateway at its socket (gw.raw): the default `iss` is that origin.
  const issuer = stack.gw.url.origin;
  const check = gatewayAssertionChecker({ jwksUrl: new URL(JWKS_PATH, stack.gw.url).href, issuer, audience: stack.origin.url, header: HEADER });
  return {
    ...stack,
    idp,
    issuer,
    check,
    async close() {
      await stack.close();
      await idp.close();
    },
  };
}

/** The gateway's assertions the origin received on its last request (every field of the name). */
function assertionsOf(rec) {
  const out = [];
  for (let i = 0; i < rec.rawHeaders.length; i += 2) {
    if (rec.rawHeaders[i].toLowerCase().replaceAll('_', '-') === HEADER) out.push(rec.rawHeaders[i + 1]);
  }
  return out;
}

describe('gateway assertion (ES256)', () => {
  let s;
  before(async () => {
    s = await startAssertingStack(KEYS.es256_a);
  });
  after(() => s?.close());
  beforeEach(() => s.origin.reset());

  test('a jwt route: every claim, checked by the recipe against the gateway key set', async () => {
    const jwt = await signJwt(s.key, { claims: { sub: 'cust-42', scope: 'profile:read orders' } });
    const res = await s.gw.raw('/account/getprofile?x=1', { method: 'POST', headers: { ...withJwt(jwt), 'x-request-id': 'req-e2e-1' }, body: '{}' });
    assert.equal(res.status, 200, res.body.toString());
    const rec = s.origin.last();
    assert.equal(assertionsOf(rec).length, 1);
    const claims = await s.check(rec);
    const header = decodeProtectedHeader(rec.headers[HEADER]);
    assert.deepEqual(header, { alg: 'ES256', typ: 'gateway+jwt', kid: 'gw-es256-a' });
    const { iat, exp, jti, ...rest } = claims;
    assert.deepEqual(rest, {
      iss: s.issuer,
      aud: s.origin.url,
      rid: 'req-e2e-1',
      htm: 'POST',
      htu: `${s.origin.url}/account/getprofile`,
      sub: 'cust-42',
      idp: ISSUER,
      scope: 'profile:read orders',
    });
    assert.equal(exp - iat, 60);
    assert.ok(Math.abs(iat - nowSecs()) <= 5);
    assert.match(jti, /^[A-Za-z0-9_-]{22}$/);
  });

  test('an opaque route: the introspected identity', async () => {
    s.idp.sessions.set('s-alice', { iss: ISSUER, sub: 'alice', scope: 'profile:read', exp: nowSecs() + 600 });
    const res = await s.gw.raw('/session/me', { headers: { cookie: 'sid=s-alice' } });
    assert.equal(res.status, 200, res.body.toString());
    const claims = await s.check(s.origin.last());
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.idp, ISSUER);
    assert.equal(claims.scope, 'profile:read');
    assert.equal(claims.htm, 'GET');
    assert.equal(claims.htu, `${s.origin.url}/session/me`);
  });

  test('a public route: no identity claims', async () => {
    const res = await s.gw.raw('/public/info?q=1', { method: 'DELETE' });
    assert.equal(res.status, 200, res.body.toString());
    const claims = await s.check(s.origin.last());
    assert.equal(claims.htm, 'DELETE');
    assert.equal(claims.htu, `${s.origin.url}/public/info`);
    for (const absent of ['sub', 'idp', 'scope']) assert.equal(claims[absent], undefined, absent);
  });

  test("a caller's copy never arrives: every spelling, twice, named by Connection", async () => {
    const forged = await signJwt(s.key, { claims: { htm: 'GET', htu: `${s.origin.url}/public/x` } });
    for (const name of ['x-gateway-assertion', 'X-Gateway-Assertion', 'x_gateway_assertion', 'x-gateway_assertion', 'X_GATEWAY-ASSERTION']) {
      for (const connection of [undefined, HEADER, name]) {
        for (const [path, extra] of [['/public/x', {}], ['/account/x', withJwt(s.jwt)]]) {
          // As raw pairs (node:http then adds no Host of its own).
          const headers = ['host', s.gw.url.host, name, forged, name, forged, ...Object.entries(extra).flat()];
          if (connection) headers.push('connection', connection);
          const res = await s.gw.raw(path, { headers });
          assert.equal(res.status, 200, `${name} ${connection} ${path}: ${res.body}`);
          const got = assertionsOf(s.origin.last());
          assert.equal(got.length, 1, `${name} ${connection} ${path}: ${got}`);
          assert.notEqual(got[0], forged);
          await s.check(s.origin.last());
        }
      }
    }
  });

  test('the key set is the gateway\'s own: never shadowed by a catch-all route, never forwarded', async () => {
    const res = await s.gw.raw(JWKS_PATH);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'application/jwk-set+json');
    assert.equal(res.headers['cache-control'], 'public, max-age=300');
    const set = JSON.parse(res.body.toString());
    assert.deepEqual(set.keys.map((k) => k.kid), ['gw-es256-a']);
    const { d, ...publicPart } = KEYS.es256_a;
    assert.deepEqual(set.keys[0], { ...publicPart, alg: 'ES256', use: 'sig' });
    assert.ok(!res.body.toString().includes(d), 'no private member');
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await s.gw.raw(JWKS_PATH, { method });
      assert.equal(r.status, 405, method);
      assert.equal(r.headers.allow, 'GET, HEAD');
    }
    assert.equal((await s.gw.raw('/.well-known/edge-auth-proxy/other')).status, 404);
    assert.equal((await s.gw.raw('/.well-known/edge-auth-proxy/x/../jwks.json')).status, 200);
    assert.equal(s.origin.count, 0, 'the origin saw none of them');
    // The catch-all does forward its own paths.
    assert.equal((await s.gw.raw('/.well-known/other.json')).status, 200);
    assert.equal(s.origin.count, 1);
  });

  test("no two requests share a jti, and the caller's x-request-id goes to rid, never to jti", async () => {
    const jtis = new Set();
    for (let i = 0; i < 6; i++) {
      const res = await s.gw.raw('/public/a', { headers: { 'x-request-id': 'chosen-by-caller' } });
      assert.equal(res.status, 200);
      const claims = await s.check(s.origin.last());
      assert.equal(claims.rid, 'chosen-by-caller');
      assert.notEqual(claims.jti, 'chosen-by-caller');
      jtis.add(claims.jti);
    }
    assert.equal(jtis.size, 6);
  });

  test('an assertion replayed with another method or path fails the recipe', async () => {
    const res = await s.gw.raw('/account/orders?page=2', { headers: withJwt(s.jwt) });
    assert.equal(res.status, 200);
    const taken = s.origin.last();
    await s.check(taken); // as sent: accepted
    await s.check({ ...taken, url: '/account/orders?page=3' }); // the query is not bound
    const replays = [
      { ...taken, method: 'DELETE' },
      { ...taken, method: 'POST' },
      { ...taken, url: '/account/other' },
      { ...taken, url: '/account/orders/' },
      { ...taken, url: '/public/orders' },
    ];
    for (const replay of replays) {
      await assert.rejects(s.check(replay), /another request/, `${replay.method} ${replay.url}`);
    }
    // Another origin (audience) and another issuer refuse it too.
    const elsewhere = gatewayAssertionChecker({ jwksUrl: new URL(JWKS_PATH, s.gw.url).href, issuer: s.issuer, audience: 'http://127.0.0.1:1', header: HEADER });
    await assert.rejects(elsewhere(taken));
    const claims = decodeJwt(taken.headers[HEADER]);
    assert.equal(claims.htu, `${s.origin.url}/account/orders`);
  });
});

describe('gateway assertion (Ed25519, GATEWAY_ISSUER, a rotation set)', () => {
  let s, gw;
  before(async () => {
    s = await startAssertingStack(KEYS.ed25519);
    gw = await startGateway({
      bindings: baseBindings({
        origin: s.origin,
        token: s.token,
        key: s.key,
        ROUTES,
        INTROSPECTION_URL: s.idp.url,
        GATEWAY_ASSERTION_HEADER: HEADER,
        GATEWAY_ISSUER: 'https://api.example.com',
        GATEWAY_SIGNING_KEY: JSON.stringify({ keys: [KEYS.ed25519, KEYS.es256_b] }),
      }),
    });
  });
  after(async () => {
    await gw?.dispose();
    await s?.close();
  });
  beforeEach(() => s.origin.reset());

  test('an Ed25519 key signs EdDSA, and the recipe checks it', async () => {
    const res = await s.gw.raw('/account/me', { headers: withJwt(s.jwt) });
    assert.equal(res.status, 200);
    const rec = s.origin.last();
    assert.equal(decodeProtectedHeader(rec.headers[HEADER]).alg, 'EdDSA');
    const claims = await s.check(rec);
    assert.equal(claims.sub, 'cust-7f3a9c');
  });

  test('GATEWAY_ISSUER is the iss; the first key signs and both are published', async () => {
    const jwksRes = await gw.raw(JWKS_PATH);
    assert.equal(jwksRes.status, 200, jwksRes.body.toString());
    const set = JSON.parse(jwksRes.body.toString());
    assert.deepEqual(set.keys.map((k) => [k.kid, k.alg]), [['gw-ed25519', 'EdDSA'], ['gw-es256-b', 'ES256']]);
    const res = await gw.raw('/public/a');
    assert.equal(res.status, 200);
    const rec = s.origin.last();
    assert.equal(decodeProtectedHeader(rec.headers[HEADER]).kid, 'gw-ed25519');
    const check = gatewayAssertionChecker({ jwksUrl: new URL(JWKS_PATH, gw.url).href, issuer: 'https://api.example.com', audience: s.origin.url, header: HEADER });
    const claims = await check(rec);
    assert.equal(claims.iss, 'https://api.example.com');
    // The other gateway's key set does not check it.
    await assert.rejects(s.check(rec));
  });
});
