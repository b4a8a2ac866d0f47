// The bundled demo: demo/origin.mjs on its own, and the gateway with demo/wrangler.toml
// settings in front of it (the `npm run demo` session, on ephemeral ports).

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { unstable_readConfig } from 'wrangler';

import {
  DEMO_API_KEY,
  DEMO_CLIENT_ID,
  DEMO_CLIENT_SECRET,
  DEMO_CUSTOMER_ID_KEY,
  DEMO_GATEWAY,
  DEMO_GATEWAY_SIGNING_KEY,
  DEMO_SESSION_COOKIE,
  customerId,
  demoKeys,
  startDemoOrigin,
} from '../../demo/origin.mjs';
import { ROOT, read, startStack } from './harness.mjs';

const DEMO_ISSUER = 'http://127.0.0.1:8788/';

const form = (obj) => ({
  method: 'POST',
  headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(obj).toString(),
});

describe('demo origin', () => {
  let origin;
  before(async () => {
    origin = await startDemoOrigin({ port: 0, issuer: DEMO_ISSUER });
  });
  after(() => origin?.close());

  const token = async (init, query = '?grant_type=client_credentials') => read(await fetch(`${origin.url}/oauth/access_token${query}`, init));

  test('token endpoint: form credentials, the documented shape (expires_in a string)', async () => {
    const res = await token(form({ client_id: DEMO_CLIENT_ID, client_secret: DEMO_CLIENT_SECRET }));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(Object.keys(res.json).sort(), ['access_token', 'client_id', 'expires_in', 'issued_at', 'scope', 'token_type']);
    assert.equal(res.json.token_type, 'Bearer');
    assert.equal(res.json.client_id, DEMO_CLIENT_ID);
    assert.equal(res.json.scope, 'client_credentials');
    assert.equal(res.json.expires_in, '28799');
    assert.match(res.json.issued_at, /^\d{13}$/);
    assert.ok(res.json.access_token.length >= 20);
  });

  test('token endpoint: HTTP Basic (form-urlencoded before base64), grant_type in the body', async () => {
    const basic = Buffer.from(`${encodeURIComponent(DEMO_CLIENT_ID)}:${encodeURIComponent(DEMO_CLIENT_SECRET)}`).toString('base64');
    const res = await token({ ...form({ grant_type: 'client_credentials' }), headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' } }, '');
    assert.equal(res.status, 200, res.text);
  });

  test('token endpoint: bad credentials are 401 invalid_client', async () => {
    const res = await token(form({ client_id: DEMO_CLIENT_ID, client_secret: 'wrong' }));
    assert.equal(res.status, 401);
    assert.deepEqual(res.json, { error: 'invalid_client' });
  });

  test('customer_authenticate: an RS256 JWT with the demo claims; bad password is 401', async () => {
    const res = await read(await fetch(`${origin.url}/auth/customer_authenticate`, form({ username: 'alice', password: 'alice-password' })));
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(Object.keys(res.json).sort(), ['JWT', 'expires_in', 'issued_at']);
    assert.equal(res.json.expires_in, '28799');
    const [h, p] = res.json.JWT.split('.').slice(0, 2).map((s) => JSON.parse(Buffer.from(s, 'base64url')));
    assert.equal(h.alg, 'RS256');
    assert.equal(h.kid, 'demo-key-1');
    assert.equal(p.iss, DEMO_ISSUER);
    assert.equal(p.aud, 'profile-api');
    assert.equal(p.sub, customerId('alice'));
    assert.ok(!p.sub.includes('alice'), 'sub must be opaque');
    assert.equal(p.exp - p.iat, 28799);
    const bad = await fetch(`${origin.url}/auth/customer_authenticate`, form({ username: 'alice', password: 'nope' }));
    assert.equal(bad.status, 401);
  });

  test('getprofile checks all three headers and says which one is wrong', async () => {
    const at = (await token(form({ client_id: DEMO_CLIENT_ID, client_secret: DEMO_CLIENT_SECRET }))).json.access_token;
    const jwt = (await read(await fetch(`${origin.url}/auth/customer_authenticate`, form({ username: 'bob', password: 'bob-password' })))).json.JWT;
    const good = { authorization: `Bearer ${at}`, 'api-key': DEMO_API_KEY, 'customer-auth': `JWT ${jwt}` };
    const get = async (headers) => read(await fetch(`${origin.url}/account/getprofile`, { method: 'POST', headers }));

    const ok = await get(good);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.customer_id, customerId('bob'));
    assert.equal(ok.json.name, 'Bob Example');
    assert.equal(ok.json.gateway_assertion, 'absent', 'called directly, not through the gateway');

    const cases = [
      [{ ...good, authorization: 'Bearer made-up' }, 401, 'authorization'],
      [{ ...good, authorization: undefined }, 401, 'authorization'],
      [{ ...good, 'api-key': 'nope' }, 403, 'api-key'],
      [{ ...good, 'customer-auth': 'JWT a.b.c' }, 401, 'customer-auth'],
      [{ ...good, 'customer-auth': undefined }, 401, 'customer-auth'],
      [{ ...good, 'x-gateway-assertion': 'eyJhbGciOiJub25lIn0.e30.' }, 401, 'x-gateway-assertion'],
    ];
    for (const [headers, status, header] of cases) {
      const clean = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined));
      const res = await get(clean);
      assert.equal(res.status, status, `${header}: ${res.text}`);
      assert.equal(res.json.header, header);
    }
  });

  test('/accounts/<id>/profile serves the account the path names to any verified customer (the gateway binds it)', async () => {
    const at = (await token(form({ client_id: DEMO_CLIENT_ID, client_secret: DEMO_CLIENT_SECRET }))).json.access_token;
    const jwt = (await read(await fetch(`${origin.url}/auth/customer_authenticate`, form({ username: 'alice', password: 'alice-password' })))).json.JWT;
    const headers = { authorization: `Bearer ${at}`, 'api-key': DEMO_API_KEY, 'customer-auth': `JWT ${jwt}` };
    const bobs = await read(await fetch(`${origin.url}/accounts/${customerId('bob')}/profile`, { headers }));
    assert.equal(bobs.status, 200, bobs.text);
    assert.equal(bobs.json.customer_id, customerId('bob'));
    const nobody = await read(await fetch(`${origin.url}/accounts/nobody/profile`, { headers }));
    assert.equal(nobody.status, 404);
    const unauthenticated = await read(await fetch(`${origin.url}/accounts/${customerId('bob')}/profile`, { headers: { ...headers, 'api-key': 'nope' } }));
    assert.equal(unauthenticated.status, 403);
  });

  test('session login sets an HttpOnly cookie; introspection answers for the demo client only', async () => {
    const login = await fetch(`${origin.url}/auth/session_login`, form({ username: 'bob', password: 'bob-password' }));
    assert.equal(login.status, 200);
    const cookie = login.headers.get('set-cookie') ?? '';
    assert.match(cookie, new RegExp(`^${DEMO_SESSION_COOKIE}=[A-Za-z0-9_-]{32}; .*HttpOnly`));
    const sid = cookie.split(';')[0].split('=')[1];
    assert.equal((await fetch(`${origin.url}/auth/session_login`, form({ username: 'bob', password: 'x' }))).status, 401);

    const ask = async (fields) => read(await fetch(`${origin.url}/oauth/introspect`, form(fields)));
    const client = { client_id: DEMO_CLIENT_ID, client_secret: DEMO_CLIENT_SECRET };
    const active = await ask({ token: sid, ...client });
    assert.equal(active.status, 200, active.text);
    assert.equal(active.json.active, true);
    assert.equal(active.json.sub, customerId('bob'));
    assert.equal(active.json.iss, DEMO_ISSUER);
    assert.equal(active.json.scope, 'profile:read');
    assert.deepEqual((await ask({ token: 'made-up', ...client })).json, { active: false });
    assert.equal((await ask({ token: sid })).status, 401, 'no client authentication');
    assert.equal((await ask({ token: sid, client_id: DEMO_CLIENT_ID, client_secret: 'x' })).status, 401);
  });

  test('JWKS: the public half of the committed demo key, and nothing private', async () => {
    const res = await read(await fetch(`${origin.url}/.well-known/jwks.json`));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, demoKeys().jwks);
    for (const k of res.json.keys) for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[priv], undefined);
  });
});

describe('demo: the gateway with demo/wrangler.toml in front of the demo origin', () => {
  let origin, gw, demoVars;

  before(async () => {
    const config = unstable_readConfig({ config: path.join(ROOT, 'demo/wrangler.toml') });
    demoVars = config.vars;
    origin = await startDemoOrigin({ port: 0, issuer: DEMO_ISSUER });
    const bindings = {
      ...demoVars,
      // The demo's fixed 8788 replaced by this test's ephemeral port.
      ORIGIN_URL: demoVars.ORIGIN_URL.replace('http://127.0.0.1:8788', origin.url),
      TOKEN_URL: demoVars.TOKEN_URL.replace('http://127.0.0.1:8788', origin.url),
      INTROSPECTION_URL: demoVars.INTROSPECTION_URL.replace('http://127.0.0.1:8788', origin.url),
      CLIENT_SECRET: DEMO_CLIENT_SECRET,
      API_KEY: DEMO_API_KEY,
      CUSTOMER_ID_KEY: DEMO_CUSTOMER_ID_KEY,
      GATEWAY_SIGNING_KEY: DEMO_GATEWAY_SIGNING_KEY,
    };
    gw = (await startStack({ servers: false, bindings })).gw;
    // The demo's fixed 8787 is this test's ephemeral port; GATEWAY_ISSUER stays the demo's.
    origin.useGatewayKeysFrom(gw.url.origin);
  });
  after(async () => {
    await gw?.dispose();
    await origin?.close();
  });

  test('demo/wrangler.toml [vars] carries the demo public key inline', () => {
    assert.deepEqual(JSON.parse(demoVars.JWT_JWKS), demoKeys().jwks);
    assert.equal(demoVars.JWT_ISSUER, DEMO_ISSUER);
    assert.equal(demoVars.CLIENT_ID, DEMO_CLIENT_ID);
    assert.ok(!JSON.stringify(demoVars).includes(DEMO_CLIENT_SECRET), 'a secret is in [vars]');
  });

  test('the curl session of demo/README.md: log in through the gateway, get the profile, a bad token is 401', async () => {
    const login = await read(await gw.fetch('/auth/customer_authenticate', form({ username: 'alice', password: 'alice-password' })));
    assert.equal(login.status, 200, login.text);
    const jwt = login.json.JWT;
    assert.ok(jwt);

    const profile = await read(
      await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'customer-auth': `JWT ${jwt}`, 'content-type': 'application/json' }, body: '{}' }),
    );
    assert.equal(profile.status, 200, profile.text);
    assert.equal(profile.json.customer_id, customerId('alice'));
    // The demo origin checked the gateway's assertion against the gateway's key set.
    const shown = profile.json.gateway_assertion;
    assert.equal(shown.verified, true, JSON.stringify(shown));
    assert.equal(shown.rid, profile.headers.get('x-request-id'));
    assert.equal(shown.htm, 'POST');
    assert.equal(shown.htu, `${origin.url}/account/getprofile`);
    assert.match(shown.jti, /^[A-Za-z0-9_-]{22}$/);
    assert.equal(demoVars.GATEWAY_ISSUER, DEMO_GATEWAY);

    const bad = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'customer-auth': 'JWT not.a.jwt' } }));
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('content-type') ?? '', /problem\+json/);
    assert.match(bad.headers.get('www-authenticate') ?? '', /invalid_token/);

    const none = await read(await gw.fetch('/account/getprofile', { method: 'POST' }));
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="edge-auth-proxy"');
  });

  test('the scoped route of the README: alice (rewards:read) gets her rewards, bob gets 403 insufficient_scope', async () => {
    const login = async (username) =>
      (await read(await gw.fetch('/auth/customer_authenticate', form({ username, password: `${username}-password` })))).json.JWT;
    const alice = await read(await gw.fetch('/account/rewards', { headers: { 'customer-auth': `JWT ${await login('alice')}` } }));
    assert.equal(alice.status, 200, alice.text);
    const { gateway_assertion: shown, ...rewards } = alice.json;
    assert.deepEqual(rewards, { customer_id: customerId('alice'), tier: 'gold', points: 1200 });
    assert.equal(shown.verified, true);
    assert.equal(shown.htm, 'GET');

    const bobJwt = await login('bob');
    const bob = await read(await gw.fetch('/account/rewards', { headers: { 'customer-auth': `JWT ${bobJwt}` } }));
    assert.equal(bob.status, 403, bob.text);
    assert.equal(bob.headers.get('www-authenticate'), 'Bearer realm="edge-auth-proxy", error="insufficient_scope", scope="rewards:read"');
    assert.match(bob.headers.get('content-type') ?? '', /problem\+json/);
    // The same token still opens the unscoped profile route.
    const profile = await read(await gw.fetch('/account/getprofile', { headers: { 'customer-auth': `JWT ${bobJwt}` } }));
    assert.equal(profile.status, 200, profile.text);
  });

  test('the bound route of the README: alice gets her own account, bob\'s is 403 binding-mismatch', async () => {
    const login = async (username) =>
      (await read(await gw.fetch('/auth/customer_authenticate', form({ username, password: `${username}-password` })))).json.JWT;
    const aliceJwt = await login('alice');
    const sub = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url')).sub;
    assert.equal(sub(aliceJwt), customerId('alice'));
    const own = await read(await gw.fetch(`/accounts/${customerId('alice')}/profile`, { headers: { 'customer-auth': `JWT ${aliceJwt}` } }));
    assert.equal(own.status, 200, own.text);
    assert.equal(own.json.customer_id, customerId('alice'));
    assert.equal(own.json.name, 'Alice Example');

    // The demo origin leaves object-level authorization to the gateway (the demo origin's own
    // test shows it serving bob's account for alice's JWT): the gateway refuses it.
    const other = await read(await gw.fetch(`/accounts/${customerId('bob')}/profile`, { headers: { 'customer-auth': `JWT ${aliceJwt}` } }));
    assert.equal(other.status, 403, other.text);
    assert.match(other.headers.get('content-type') ?? '', /problem\+json/);
    assert.equal(other.json.type, 'urn:edge-auth-proxy:problem:binding-mismatch');
    assert.ok(!other.text.includes(customerId('bob')), 'the detail never repeats an id');
    const bobJwt = await login('bob');
    const bobs = await read(await gw.fetch(`/accounts/${customerId('bob')}/profile`, { headers: { 'customer-auth': `JWT ${bobJwt}` } }));
    assert.equal(bobs.status, 200, bobs.text);
    assert.equal(bobs.json.customer_id, customerId('bob'));
  });

  test('the cookie session of demo/README.md: log in through the gateway, the cookie vouched for by introspection', async () => {
    const login = await gw.fetch('/auth/session_login', form({ username: 'alice', password: 'alice-password' }));
    assert.equal(login.status, 200);
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0];
    assert.match(cookie, new RegExp(`^${DEMO_SESSION_COOKIE}=`), 'Set-Cookie passes back through the gateway');

    const profile = await read(await gw.fetch('/session/getprofile', { headers: { cookie } }));
    assert.equal(profile.status, 200, profile.text);
    assert.equal(profile.json.customer_id, customerId('alice'));
    const expectedId = createHmac('sha256', Buffer.from(DEMO_CUSTOMER_ID_KEY, 'base64'))
      .update(`${DEMO_ISSUER}\n${customerId('alice')}`)
      .digest('base64url');
    assert.equal(profile.json.gateway_customer_id, expectedId, 'x-customer-id: HMAC of iss and sub');
    assert.equal(profile.json.gateway_assertion.verified, true);
    assert.equal(profile.json.gateway_assertion.sub, expectedId, 'the assertion names the customer id');

    // The same customer through the JWT flow gets the same customer id.
    const jwt = (await read(await gw.fetch('/auth/customer_authenticate', form({ username: 'alice', password: 'alice-password' })))).json.JWT;
    const viaJwt = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'customer-auth': `JWT ${jwt}` } }));
    assert.equal(viaJwt.status, 200, viaJwt.text);
    assert.equal(viaJwt.json.gateway_customer_id, expectedId);

    const none = await read(await gw.fetch('/session/getprofile'));
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="edge-auth-proxy"');
    const bogus = await read(await gw.fetch('/session/getprofile', { headers: { cookie: `${DEMO_SESSION_COOKIE}=not-a-session` } }));
    assert.equal(bogus.status, 401);
    assert.match(bogus.headers.get('www-authenticate') ?? '', /invalid_token/);
  });
});
