// The bundled demo: demo/origin.mjs on its own, and the gateway with wrangler.toml's [env.demo]
// settings in front of it (the `npm run demo` session, on ephemeral ports).

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { unstable_readConfig } from 'wrangler';

import {
  DEMO_API_KEY,
  DEMO_CLIENT_ID,
  DEMO_CLIENT_SECRET,
  customerId,
  demoKeys,
  startDemoOrigin,
} from '../../demo/origin.mjs';
import { ROOT, read, startGateway } from './harness.mjs';

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

    const cases = [
      [{ ...good, authorization: 'Bearer made-up' }, 401, 'authorization'],
      [{ ...good, authorization: undefined }, 401, 'authorization'],
      [{ ...good, 'api-key': 'nope' }, 403, 'api-key'],
      [{ ...good, 'customer-auth': 'JWT a.b.c' }, 401, 'customer-auth'],
      [{ ...good, 'customer-auth': undefined }, 401, 'customer-auth'],
    ];
    for (const [headers, status, header] of cases) {
      const clean = Object.fromEntries(Object.entries(headers).filter(([, v]) => v !== undefined));
      const res = await get(clean);
      assert.equal(res.status, status, `${header}: ${res.text}`);
      assert.equal(res.json.header, header);
    }
  });

  test('JWKS: the public half of the committed demo key, and nothing private', async () => {
    const res = await read(await fetch(`${origin.url}/.well-known/jwks.json`));
    assert.equal(res.status, 200);
    assert.deepEqual(res.json, demoKeys().jwks);
    for (const k of res.json.keys) for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(k[priv], undefined);
  });
});

describe('demo: the gateway with [env.demo] in front of the demo origin', () => {
  let origin, gw, demoVars;

  before(async () => {
    const config = unstable_readConfig({ config: path.join(ROOT, 'wrangler.toml'), env: 'demo' });
    demoVars = config.vars;
    origin = await startDemoOrigin({ port: 0, issuer: DEMO_ISSUER });
    const bindings = {
      ...demoVars,
      // The demo's fixed 8788 replaced by this test's ephemeral port.
      ORIGIN_URL: demoVars.ORIGIN_URL.replace('http://127.0.0.1:8788', origin.url),
      TOKEN_URL: demoVars.TOKEN_URL.replace('http://127.0.0.1:8788', origin.url),
      CLIENT_SECRET: DEMO_CLIENT_SECRET,
      API_KEY: DEMO_API_KEY,
    };
    gw = await startGateway({ bindings });
  });
  after(async () => {
    await gw?.dispose();
    await origin?.close();
  });

  test('wrangler.toml [env.demo.vars] carries the demo public key inline', () => {
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

    const bad = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'customer-auth': 'JWT not.a.jwt' } }));
    assert.equal(bad.status, 401);
    assert.match(bad.headers.get('content-type') ?? '', /problem\+json/);
    assert.match(bad.headers.get('www-authenticate') ?? '', /invalid_token/);

    const none = await read(await gw.fetch('/account/getprofile', { method: 'POST' }));
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="edge-auth-proxy"');
  });
});
