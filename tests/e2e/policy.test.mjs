// Per-route policy and several identity providers, in the built Worker: providers matched by
// `iss` with their own keys (one inline, one from a JWKS URL that counts its fetches, and a real
// OpenID provider, oidc-provider, issuing JWT access tokens with `scope`), a route naming one
// provider, scopes and claims 403s with nothing forwarded, claims to headers, `optional` and
// `report`, and CORS preflights forwarded without credentials.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, beforeEach, describe, test } from 'node:test';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, read, requestLog, startStack } from './harness.mjs';
import { jwks, makeKey, nowSecs, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

const A = 'https://a.issuer.test/';
const B = 'https://b.issuer.test/';
const RESOURCE = 'https://orders-api.test/';
const CREDENTIALS = ['authorization', 'customer-auth', 'api-key'];

/** oidc-provider on loopback: client credentials, JWT access tokens for RESOURCE with `scope`. */
async function startOpenIdProvider() {
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const jwk = { ...(await exportJWK(privateKey)), kid: 'oidc-1', alg: 'RS256', use: 'sig' };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'orders-client',
        client_secret: 'orders-client-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'orders:read profile',
      },
    ],
    jwks: { keys: [jwk] },
    scopes: ['orders:read', 'profile'],
    cookies: { keys: ['policy-e2e-cookie-key'] },
    ttl: { ClientCredentials: 600 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'orders:read profile',
          audience: RESOURCE,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  let jwksFetches = 0;
  server.prependListener('request', (req) => {
    if (req.url.startsWith('/jwks')) jwksFetches++;
  });
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    get jwksFetches() {
      return jwksFetches;
    },
    /** A JWT access token from the provider's token endpoint, granted `scope`. */
    async accessToken(scope) {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('orders-client:orders-client-secret').toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope }).toString(),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      return body.access_token;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

describe('per-route policy and identity providers', () => {
  let origin, tokenEndpoint, keyA, keyB, jwksB, oidc, gw;

  const routes = () => [
    { prefix: '/b-only', issuers: [B] },
    { prefix: '/orders', scopes: ['orders:read'] },
    { prefix: '/gold', claims: { tier: 'gold', 'org.region': ['eu', 'uk'] } },
    {
      prefix: '/headers',
      claims_to_headers: { 'x-sub': 'sub', 'x-level': 'level', 'x-roles': 'roles', 'x-org-id': 'org.id', 'x-absent': 'nope' },
    },
    { prefix: '/optional', auth: 'optional' },
    { prefix: '/report', auth: 'report', scopes: ['orders:read'] },
    { prefix: '/cors', cors_preflight: 'forward' },
    { prefix: '/oidc/orders', issuers: [oidc.issuer], scopes: ['orders:read'] },
    { prefix: '/oidc/admin', issuers: [oidc.issuer], scopes: ['orders:write'] },
    { prefix: '/' },
  ];

  before(async () => {
    [origin, tokenEndpoint, keyA, keyB, oidc] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      makeKey('ES256', 'a-1'),
      makeKey('RS256', 'b-1'),
      startOpenIdProvider(),
    ]);
    jwksB = await startJwksServer(jwks(keyB));
    const providers = [
      { issuer: A, jwks: jwks(keyA), audiences: ['profile-api'], algorithms: ['ES256'] },
      { issuer: B, jwks_url: jwksB.url, audiences: ['profile-api'], algorithms: ['RS256'] },
      { issuer: oidc.issuer, jwks_url: oidc.jwksUrl, audiences: [RESOURCE], algorithms: ['RS256'] },
    ];
    gw = (await startStack({ servers: false,
      bindings: {
        ORIGIN_URL: origin.url,
        TOKEN_URL: `${tokenEndpoint.url}?grant_type=client_credentials`,
        CLIENT_ID,
        CLIENT_SECRET,
        API_KEY,
        JWT_ALGORITHMS: 'ES256,RS256',
        JWT_PROVIDERS: JSON.stringify(providers),
        ROUTES: JSON.stringify(routes()),
      },
    })).gw;
  });
  after(async () => {
    await gw?.dispose();
    await Promise.all([origin?.close(), tokenEndpoint?.close(), jwksB?.close(), oidc?.close()]);
  });
  beforeEach(() => origin.reset());

  const tokenA = (claims = {}) => signJwt(keyA, { issuer: A, claims });
  const tokenB = (claims = {}) => signJwt(keyB, { issuer: B, claims });
  const get = (path, jwt, headers = {}) =>
    gw.fetch(path, { headers: { ...(jwt ? { authorization: `Bearer ${jwt}` } : {}), ...headers } }).then(read);
  const logOf = (res) => requestLog(gw, res.headers.get('x-request-id'));

  test('each provider\'s token is accepted, checked with its own keys only', async () => {
    const a = await get('/x', await tokenA());
    assert.equal(a.status, 200, a.text);
    const fetchesBefore = jwksB.count;
    const b = await get('/x', await tokenB());
    assert.equal(b.status, 200, b.text);
    assert.equal(origin.count, 2);
    assert.equal(origin.requests[1].headers['customer-auth']?.startsWith('JWT '), true);
    assert.ok(jwksB.count - fetchesBefore <= 1, 'B\'s key set fetched at most once');
    const again = await get('/x', await tokenB({ jti: 'second' }));
    assert.equal(again.status, 200);
    assert.ok(jwksB.count - fetchesBefore <= 1, 'and then served from memory');

    // B's key under A's issuer (and A's key under B's): refused, nothing forwarded.
    origin.reset();
    const forgedA = await signJwt(keyB, { issuer: A, header: { kid: 'a-1' } });
    const forgedB = await signJwt(keyA, { issuer: B, header: { kid: 'b-1' } });
    for (const forged of [forgedA, forgedB]) {
      const res = await get('/x', forged);
      assert.equal(res.status, 401, res.text);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
    const stranger = await get('/x', await signJwt(keyA, { issuer: 'https://c.issuer.test/' }));
    assert.equal(stranger.status, 401);
    assert.equal((await logOf(stranger))?.outcome, 'wrong_issuer');
    assert.equal(origin.count, 0);
  });

  test('a route naming one provider refuses the other\'s valid token', async () => {
    const refused = await get('/b-only/x', await tokenA());
    assert.equal(refused.status, 401, refused.text);
    const log = await logOf(refused);
    assert.equal(log?.policy, 'issuers');
    assert.equal(origin.count, 0);
    const ok = await get('/b-only/x', await tokenB());
    assert.equal(ok.status, 200, ok.text);
    assert.equal(origin.count, 1);
  });

  test('scopes: 403 insufficient_scope naming them, nothing forwarded; scope and scp both grant', async () => {
    const lacking = await get('/orders', await tokenA({ scope: 'orders profile' }));
    assert.equal(lacking.status, 403, lacking.text);
    assert.equal(
      lacking.headers.get('www-authenticate'),
      'Bearer realm="edge-auth-proxy", error="insufficient_scope", scope="orders:read"',
    );
    assert.equal((await logOf(lacking))?.policy, 'scopes');
    assert.equal(origin.count, 0);
    assert.equal((await get('/orders', await tokenA({ scope: 'profile orders:read' }))).status, 200);
    assert.equal((await get('/orders', await tokenB({ scp: ['orders:read'] }))).status, 200);
    assert.equal(origin.count, 2);
  });

  test('claims: 403 problem+json, nothing forwarded; "true"-style near misses fail', async () => {
    for (const claims of [
      { tier: 'silver', org: { region: 'eu' } },
      { tier: 'gold', org: { region: 'us' } },
      { tier: 'gold', org: 'eu' },
      { tier: ['silver'], org: { region: 'uk' } },
      { tier: 'gold' },
    ]) {
      const res = await get('/gold', await tokenA(claims));
      assert.equal(res.status, 403, JSON.stringify(claims));
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.json?.status, 403);
      assert.equal((await logOf(res))?.policy, 'claims');
    }
    assert.equal(origin.count, 0);
    const ok = await get('/gold', await tokenA({ tier: ['silver', 'gold'], org: { region: 'uk' } }));
    assert.equal(ok.status, 200, ok.text);
  });

  test('claims to headers: string, number, array, nested; absent sends none; caller copies removed', async () => {
    const jwt = await tokenA({ level: 3, roles: ['admin', 'ops'], org: { id: 'o-7' } });
    const res = await gw.raw('/headers', {
      headers: { authorization: `Bearer ${jwt}`, 'x-sub': 'forged', x_sub: 'forged', 'x-absent': 'forged', 'X-Org-Id': 'forged' },
    });
    assert.equal(res.status, 200, String(res.body));
    const seen = origin.last();
    assert.equal(seen.headers['x-sub'], 'cust-7f3a9c');
    assert.equal(seen.headers['x-level'], '3');
    assert.equal(seen.headers['x-roles'], 'admin,ops');
    assert.equal(seen.headers['x-org-id'], 'o-7');
    assert.equal(seen.headers['x-absent'], undefined);
    assert.equal(seen.headers.x_sub, undefined);
    const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.equal(names.filter((n) => n === 'x-sub').length, 1);
  });

  test('optional: no JWT forwards as public; a bad one is 401; a good one carries all three', async () => {
    const anonymous = await get('/optional');
    assert.equal(anonymous.status, 200, anonymous.text);
    assert.equal(origin.last().headers['customer-auth'], undefined);
    assert.equal(origin.last().headers['api-key'], API_KEY);
    assert.match(origin.last().headers.authorization ?? '', /^Bearer /);

    const expired = await get('/optional', await tokenA({ exp: nowSecs() - 3600, iat: nowSecs() - 4000 }));
    assert.equal(expired.status, 401);
    assert.equal(origin.count, 1);

    const jwt = await tokenA();
    assert.equal((await get('/optional', jwt)).status, 200);
    assert.equal(origin.last().headers['customer-auth'], `JWT ${jwt}`);
  });

  test('report: forwarded whatever the outcome, the would-be outcome logged, customer-auth only when valid', async () => {
    const cases = [
      [undefined, 'missing_token'],
      [await tokenA({ exp: nowSecs() - 3600, iat: nowSecs() - 4000 }), 'token_expired'],
      [await tokenA({ scope: 'profile' }), 'insufficient_scope'],
      [await tokenA({ scope: 'orders:read' }), 'forwarded'],
    ];
    for (const [jwt, report] of cases) {
      const res = await get('/report', jwt);
      assert.equal(res.status, 200, `${report}: ${res.text}`);
      const log = await logOf(res);
      assert.equal(log?.report, report);
      assert.equal(log?.outcome, 'forwarded');
      const seen = origin.last();
      assert.equal(seen.headers['api-key'], API_KEY);
      assert.equal(seen.headers['customer-auth'] !== undefined, report === 'forwarded', report);
    }
    assert.equal(origin.count, cases.length);
  });

  test('a CORS preflight is forwarded without any credential; a plain OPTIONS is not', async () => {
    const res = await gw.raw('/cors/x', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization',
        authorization: 'Bearer caller-token',
        api_key: 'caller-key',
      },
    });
    assert.equal(res.status, 200, String(res.body));
    const seen = origin.last();
    assert.equal(seen.method, 'OPTIONS');
    for (const name of [...CREDENTIALS, 'api_key']) assert.equal(seen.headers[name], undefined, `${name} reached the origin`);
    assert.equal(seen.headers.origin, 'https://app.example');
    assert.equal((await requestLog(gw, res.headers['x-request-id']))?.cors_preflight, 'forwarded');

    const plain = await gw.raw('/cors/x', { method: 'OPTIONS', headers: { origin: 'https://app.example' } });
    assert.equal(plain.status, 401);
    assert.equal(origin.count, 1);
  });

  test('a preflight is an OPTIONS without a body; an OPTIONS with one needs a JWT; forwarded ones carry no Cookie', async () => {
    const preflight = { origin: 'https://app.example', 'access-control-request-method': 'DELETE' };
    const bare = await gw.raw('/cors/x?q=1', {
      method: 'OPTIONS',
      headers: { ...preflight, cookie: 'sid=abc; theme=dark', 'customer-auth': 'JWT caller', 'content-length': '0' },
    });
    assert.equal(bare.status, 200, String(bare.body));
    const seen = origin.last();
    assert.equal(seen.headers.cookie, undefined, 'a forwarded preflight carries no Cookie');
    for (const name of CREDENTIALS) assert.notEqual(seen.headers[name], 'JWT caller');
    assert.equal(seen.headers['customer-auth'], undefined);
    assert.equal(seen.url, '/cors/x?q=1');
    assert.equal(seen.body.length, 0);
    // With a body, whichever way it is sent: an ordinary request, refused without a JWT.
    const withBodies = [
      () => gw.raw('/cors/x', { method: 'OPTIONS', headers: { ...preflight, 'content-length': '3', cookie: 'sid=abc' }, body: 'x=1' }),
      () => gw.raw('/cors/x', { method: 'OPTIONS', headers: { ...preflight, 'transfer-encoding': 'chunked' }, body: 'x=1&y=2' }),
      () => gw.fetch('/cors/x', { method: 'OPTIONS', headers: preflight, body: 'x=1' }).then(async (r) => ({ status: r.status, body: await r.text() })),
    ];
    const before = origin.count;
    for (const [i, send] of withBodies.entries()) {
      const res = await send();
      assert.equal(res.status, 401, `case ${i}: ${res.body}`);
    }
    assert.equal(origin.count, before, 'none was forwarded');
  });

  test('interop: oidc-provider JWT access tokens with scope, its JWKS as a provider\'s jwks_url', async () => {
    const granted = await oidc.accessToken('orders:read');
    const res = await get('/oidc/orders', granted);
    assert.equal(res.status, 200, res.text);
    assert.equal(origin.last().headers['customer-auth'], `JWT ${granted}`);
    assert.ok(oidc.jwksFetches >= 1, 'keys came from the provider\'s jwks_uri');
    const log = await logOf(res);
    assert.equal(log?.iss, oidc.issuer);

    const narrow = await oidc.accessToken('profile');
    const lacking = await get('/oidc/orders', narrow);
    assert.equal(lacking.status, 403, lacking.text);
    assert.match(lacking.headers.get('www-authenticate') ?? '', /scope="orders:read"/);
    const admin = await get('/oidc/admin', granted);
    assert.equal(admin.status, 403);
    // Its tokens are for RESOURCE: the A/B audience is not accepted on the catch-all route.
    assert.equal((await get('/x', await tokenA({ aud: RESOURCE }))).status, 401);
    assert.equal(origin.count, 1);
  });
});
