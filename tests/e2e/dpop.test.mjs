// DPoP (RFC 9449) in the built Worker, with oidc-provider 8 as the real issuer: its `dPoP`
// feature binds the client-credentials access tokens it issues as JWTs (`cnf.jkt`), and the
// proofs are made with `jose`. A good proof passes (with `Authorization: DPoP` and with
// `customer-auth`, and the `DPoP` header never reaches the origin); each hostile proof of the
// attacker's checklist, one at a time, is 401 with the DPoP challenge and reaches no origin.
// Then replay across isolates: two isolates bound to one `ReplayGuard` (DPOP_REPLAY) refuse a
// proof the other accepted; without the binding, only the isolate that saw it refuses it.

import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

import { startStack } from './harness.mjs';
import { sendersBindings, startOidcProvider } from './oidc.mjs';

const RESOURCE = 'https://profile-api.test/';
const GATEWAY = 'http://gateway.test';
const b64u = (buf) => Buffer.from(buf).toString('base64url');
const ath = (token) => b64u(createHash('sha256').update(token).digest());
const nowSecs = () => Math.floor(Date.now() / 1000);

/** oidc-provider on loopback: client credentials, DPoP-bound JWT access tokens (ES256). */
async function startOpenIdProvider() {
  const { server, issuer } = await startOidcProvider({
    clients: [{
      client_id: 'dpop-client',
      client_secret: 'dpop-client-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'profile',
      id_token_signed_response_alg: 'ES256',
    }],
    scope: 'profile',
    resource: RESOURCE,
    cookieKey: 'dpop-e2e-cookie-key',
    features: { dPoP: { enabled: true } },
  });
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    /** A DPoP-bound access token for `key` (a jose key pair with its public JWK). */
    async accessToken(key) {
      const url = `${issuer}/token`;
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('dpop-client:dpop-client-secret').toString('base64')}`,
          dpop: await proof(key, { htm: 'POST', htu: url }),
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'profile' }).toString(),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.equal(body.token_type, 'DPoP');
      return body.access_token;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

async function clientKey(alg = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  return { alg, privateKey, publicJwk, privateJwk: await exportJWK(privateKey), jkt: await calculateJwkThumbprint(publicJwk) };
}

let jtis = 0;
/** A DPoP proof by `key`: `claims` over the defaults, `header` over the defaults. */
async function proof(key, claims = {}, header = {}) {
  return new SignJWT({ iat: nowSecs(), jti: `jti-${process.pid}-${++jtis}-${Math.random()}`, ...claims })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.publicJwk, ...header })
    .sign(key.privateKey);
}

function bindingsFor(oidc) {
  return sendersBindings(oidc, RESOURCE, [{ prefix: '/account', sender_constraint: 'required' }, { prefix: '/' }]);
}

describe('DPoP against oidc-provider', () => {
  let oidc, key, token, s;

  before(async () => {
    oidc = await startOpenIdProvider();
    key = await clientKey();
    token = await oidc.accessToken(key);
    const claims = JSON.parse(Buffer.from(token.split('.')[1], 'base64url'));
    assert.equal(claims.cnf?.jkt, key.jkt, 'oidc-provider bound the token to the key');
    s = await startStack({
      size: 2,
      coordinator: false,
      bindings: bindingsFor(oidc),
      workerOptions: { durableObjects: { DPOP_REPLAY: { className: 'ReplayGuard', scriptName: 'isolate-0' } } },
    });
  });
  after(async () => {
    await s?.close();
    await oidc?.close();
  });

  /** `GET path` on isolate `i` with `token` as `Authorization: DPoP` and `dpop`. */
  async function get(i, path, dpop, { scheme = 'DPoP', tok = token } = {}) {
    const headers = { authorization: `${scheme} ${tok}` };
    if (dpop !== undefined) headers.dpop = dpop;
    const before = s.origin.requests.length;
    const res = await s.fleet.fetch(i, path, { headers });
    const body = await res.text();
    return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body, forwarded: s.origin.requests.length - before };
  }

  const good = (over = {}, header = {}, k = key) =>
    proof(k, { htm: 'GET', htu: `${GATEWAY}/account/x`, ath: ath(token), ...over }, header);

  test('a good proof passes, in either place, and the proof stays at the gateway', async () => {
    const res = await get(0, '/account/x', await good());
    assert.equal(res.status, 200, res.body);
    assert.equal(res.forwarded, 1);
    const seen = s.origin.requests.at(-1);
    assert.equal(seen.headers.dpop, undefined);
    assert.equal(seen.headers['customer-auth'], `JWT ${token}`);
    const before = s.origin.requests.length;
    const ca = await s.fleet.fetch(1, '/account/x', { headers: { 'customer-auth': `JWT ${token}`, dpop: await good() } });
    assert.equal(ca.status, 200, await ca.text());
    assert.equal(s.origin.requests.length, before + 1);
  });

  test('hostile proofs, one at a time: 401 invalid_dpop_proof, never forwarded', async () => {
    const other = await clientKey();
    const otherToken = await oidc.accessToken(other);
    const hs = async () => {
      const h = b64u(JSON.stringify({ alg: 'HS256', typ: 'dpop+jwt', jwk: key.publicJwk }));
      const c = b64u(JSON.stringify({ htm: 'GET', htu: `${GATEWAY}/account/x`, iat: nowSecs(), ath: ath(token), jti: 'hs' }));
      return `${h}.${c}.${b64u(createHmac('sha256', key.jkt).update(`${h}.${c}`).digest())}`;
    };
    const none = () => {
      const h = b64u(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: key.publicJwk }));
      const c = b64u(JSON.stringify({ htm: 'GET', htu: `${GATEWAY}/account/x`, iat: nowSecs(), ath: ath(token), jti: 'none' }));
      return `${h}.${c}.`;
    };
    const cases = [
      ['wrong htm', () => good({ htm: 'POST' })],
      ['another host', () => good({ htu: 'http://evil.test/account/x' })],
      ['the path after normalization (request /account//x)', () => good({ htu: `${GATEWAY}/account/x` }), '/account//x'],
      ['ath of another token', () => good({ ath: ath(otherToken) })],
      ['another key', () => good({}, {}, other)],
      ['alg none', none],
      ['HS256 keyed with the thumbprint', hs],
      ['a private key in the header', () => good({}, { jwk: key.privateJwk })],
      ['too old', () => good({ iat: nowSecs() - 120 })],
      ['from the future', () => good({ iat: nowSecs() + 120 })],
      ['oversize', () => good({ pad: 'x'.repeat(5000) })],
      ['no proof', () => undefined],
    ];
    for (const [name, make, path = '/account/x'] of cases) {
      const res = await get(0, path, await make());
      assert.equal(res.status, 401, `${name}: ${res.body}`);
      assert.match(res.challenge, /^DPoP error="invalid_dpop_proof"/, name);
      assert.equal(JSON.parse(res.body).type, 'urn:edge-auth-proxy:problem:invalid-dpop-proof', name);
      assert.equal(res.forwarded, 0, name);
    }
    // The path before normalization, as the client sent it, passes.
    const asSent = await get(0, '/account//x', await good({ htu: `${GATEWAY}/account//x` }));
    assert.equal(asSent.status, 200, asSent.body);
  });

  test('a DPoP-bound token as a bearer token, and bearer tokens on a sender_constraint route, are refused', async () => {
    const bearer = await get(0, '/account/x', await good(), { scheme: 'Bearer' });
    assert.equal(bearer.status, 401);
    assert.match(bearer.challenge, /^DPoP error="invalid_token"/);
    assert.equal(bearer.forwarded, 0);
  });

  test('replay across isolates: refused on the other isolate with DPOP_REPLAY bound', async () => {
    const p = await good();
    const first = await get(0, '/account/x', p);
    assert.equal(first.status, 200, first.body);
    const elsewhere = await get(1, '/account/x', p);
    assert.equal(elsewhere.status, 401, elsewhere.body);
    assert.match(elsewhere.challenge, /invalid_dpop_proof/);
    assert.equal(elsewhere.forwarded, 0);
    const same = await get(0, '/account/x', p);
    assert.equal(same.status, 401);
    // Concurrent: one proof sent to both isolates at once passes once.
    const q = await good();
    const both = await Promise.all([get(0, '/account/x', q), get(1, '/account/x', q)]);
    assert.deepEqual(both.map((r) => r.status).sort(), [200, 401]);
  });
});

describe('DPoP replay without DPOP_REPLAY', () => {
  test('refused by the isolate that saw the proof; another isolate accepts it (per isolate only)', async (t) => {
    const oidc = await startOpenIdProvider();
    t.after(() => oidc.close());
    const key = await clientKey();
    const token = await oidc.accessToken(key);
    const s = await startStack({ size: 2, coordinator: false, bindings: bindingsFor(oidc) });
    t.after(() => s.close());
    const p = await proof(key, { htm: 'GET', htu: `${GATEWAY}/account/x`, ath: ath(token) });
    const send = async (i) => (await s.fleet.fetch(i, '/account/x', { headers: { authorization: `DPoP ${token}`, dpop: p } })).status;
    assert.equal(await send(0), 200);
    assert.equal(await send(0), 401);
    assert.equal(await send(1), 200, 'what the reference says is left open without the binding');
  });
});
