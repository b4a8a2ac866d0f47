// Identity providers, second round, in the built Worker: discovery (a real OpenID provider,
// oidc-provider, configured by its issuer alone; and hostile discovery documents from a test
// server), token types (RFC 9068 `at+jwt` access tokens against the same claims as `JWT`-typed
// and untyped tokens), per-provider leeway, and `JWT_HEADER` (Cloudflare Access's
// `Cf-Access-Jwt-Assertion`): read, one identifier per request, never forwarded.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { SignJWT, decodeJwt, importJWK } from 'jose';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, read, requestLog, scheduled, startStack, withJwt } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { jwks, listen, makeKey, nowSecs, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';
import { startOidcProvider } from './oidc.mjs';

const RESOURCE = 'https://orders-api.test/';
const NOT_OF_TYPE = 'The token is not of an accepted type';

/** oidc-provider on loopback issuing RFC 9068 JWT access tokens for RESOURCE; counts discovery. */
async function startOpenIdProvider() {
  const { server, issuer, jwk } = await startOidcProvider({
    alg: 'RS256',
    kid: 'oidc-1',
    clients: [
      {
        client_id: 'orders-client',
        client_secret: 'orders-client-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
        scope: 'orders:read',
      },
    ],
    scope: 'orders:read',
    resource: RESOURCE,
    cookieKey: 'providers-e2e-cookie-key',
  });
  const hits = [];
  server.prependListener('request', (req) => hits.push(req.url));
  const signingKey = await importJWK(jwk, 'RS256');
  return {
    issuer,
    hits,
    async accessToken() {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('orders-client:orders-client-secret').toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'orders:read' }).toString(),
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      return body.access_token;
    },
    /** The same claims as `token`, signed with the provider's own key under another header. */
    resign(token, header) {
      return new SignJWT(decodeJwt(token)).setProtectedHeader({ alg: 'RS256', kid: 'oidc-1', ...header }).sign(signingKey);
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

const bearer = (t) => ({ authorization: `Bearer ${t}` });

async function logOf(gw, res) {
  return requestLog(gw, res.headers.get('x-request-id'));
}

describe('discovery and token types against oidc-provider, configured by its issuer alone', () => {
  let origin, tokenEndpoint, oidc, viaProviders, viaFlat;

  before(async () => {
    [origin, tokenEndpoint, oidc] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      startOpenIdProvider(),
    ]);
    const common = {
      ORIGIN_URL: origin.url,
      TOKEN_URL: `${tokenEndpoint.url}?grant_type=client_credentials`,
      CLIENT_ID,
      CLIENT_SECRET,
      API_KEY,
      JWT_ALGORITHMS: 'RS256',
    };
    [viaProviders, viaFlat] = await Promise.all([
      startStack({
        servers: false,
        bindings: {
          ...common,
          // The issuer, its audience and the kind of token: nothing about keys.
          JWT_PROVIDERS: JSON.stringify([{ issuer: oidc.issuer, audiences: [RESOURCE], types: ['at+jwt'] }]),
        },
      }),
      startStack({
        servers: false,
        bindings: { ...common, JWT_ISSUER: oidc.issuer, JWT_AUDIENCE: RESOURCE, JWT_TYPES: 'at+jwt' },
      }),
    ]);
  });
  after(async () => {
    await Promise.all([viaProviders?.gw.dispose(), viaFlat?.gw.dispose()]);
    await Promise.all([origin?.close(), tokenEndpoint?.close(), oidc?.close()]);
  });
  beforeEach(() => origin.reset());

  for (const [name, stack] of [['JWT_PROVIDERS issuer', () => viaProviders], ['JWT_ISSUER alone', () => viaFlat]]) {
    test(`${name}: at+jwt access tokens pass; the same claims typed JWT, untyped or of another type do not`, async () => {
      const gw = stack().gw;
      const before = oidc.hits.filter((u) => u === '/.well-known/openid-configuration').length;
      const at = await oidc.accessToken();
      assert.equal(JSON.parse(Buffer.from(at.split('.')[0], 'base64url')).typ, 'at+jwt', 'oidc-provider issues RFC 9068 tokens');
      const ok = await gw.fetch('/orders/1', { headers: bearer(at) }).then(read);
      assert.equal(ok.status, 200, ok.text);
      assert.equal(origin.last().headers['customer-auth'], `JWT ${at}`);
      const fetched = oidc.hits.filter((u) => u === '/.well-known/openid-configuration').length;
      assert.equal(fetched - before, 1, 'the discovery document was read once');
      assert.ok(oidc.hits.includes('/jwks'), 'its jwks_uri was fetched');

      // RFC 7515 §4.1.9: application/at+jwt is the same type; case does not matter.
      for (const typ of ['application/at+jwt', 'AT+JWT']) {
        const res = await gw.fetch('/orders/1', { headers: bearer(await oidc.resign(at, { typ })) }).then(read);
        assert.equal(res.status, 200, `${typ}: ${res.text}`);
      }
      const forwarded = origin.count;
      for (const header of [{ typ: 'JWT' }, {}, { typ: 'jwt' }, { typ: 'application/jwt' }, { typ: 'text/at+jwt' }, { typ: 'id_token+jwt' }]) {
        const res = await gw.fetch('/orders/1', { headers: bearer(await oidc.resign(at, header)) }).then(read);
        assert.equal(res.status, 401, `${JSON.stringify(header)}: ${res.text}`);
        assert.equal(res.json.detail, `${NOT_OF_TYPE}.`);
        assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`error="invalid_token", error_description="${NOT_OF_TYPE}"`));
        assert.equal((await logOf(gw, res))?.outcome, 'wrong_token_type');
      }
      assert.equal(origin.count, forwarded, 'none of them was forwarded');
    });
  }
});

describe('hostile discovery documents', () => {
  let origin, tokenEndpoint, key, idp, stack, gw;
  const down = new Set();
  const tenants = ['good', 'mismatch', 'httpjwks', 'oversize', 'redirect', 'down', 'fallback', 'cached', 'lenient'];
  const iss = (tenant) => `${idp.url}/${tenant}`;

  /** Each tenant's discovery document, or how it misbehaves. */
  function answer(tenant, where, res) {
    const doc = (body, cacheControl = 'max-age=60') => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': cacheControl });
      res.end(JSON.stringify(body));
    };
    const good = { issuer: iss(tenant), jwks_uri: `${idp.url}/keys`, token_endpoint: `${idp.url}/token` };
    if (down.has(tenant) || tenant === 'down') {
      res.writeHead(503);
      return res.end('down');
    }
    switch (tenant) {
      case 'mismatch':
        return doc({ ...good, issuer: iss('good') });
      case 'httpjwks':
        return doc({ ...good, jwks_uri: 'http://keys.example.com/jwks' });
      case 'oversize':
        return doc({ ...good, padding: 'x'.repeat(300 * 1024) });
      case 'redirect':
        res.writeHead(302, { location: `${idp.url}/redirect-target/.well-known/openid-configuration` });
        return res.end();
      case 'fallback':
        if (where === 'openid') {
          res.writeHead(404);
          return res.end();
        }
        return doc(good);
      default:
        return doc(good);
    }
  }

  before(async () => {
    [origin, tokenEndpoint, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      makeKey('ES256', 'hostile-1'),
    ]);
    const hits = [];
    idp = await listen((req, res) => {
      hits.push(req.url);
      const openid = /^\/([a-z-]+)\/\.well-known\/openid-configuration$/.exec(req.url);
      const oauth = /^\/\.well-known\/oauth-authorization-server\/([a-z-]+)$/.exec(req.url);
      if (openid) return answer(openid[1], 'openid', res);
      if (oauth) return answer(oauth[1], 'oauth', res);
      if (req.url === '/keys') {
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' });
        return res.end(JSON.stringify(jwks(key)));
      }
      res.writeHead(404);
      res.end();
    });
    idp.hits = hits;
    const providers = tenants.map((t) => ({
      issuer: iss(t),
      audiences: ['profile-api'],
      ...(t === 'good' ? { leeway_seconds: 0 } : {}),
      ...(t === 'lenient' ? { leeway_seconds: 600 } : {}),
    }));
    stack = await startStack({
      servers: false,
      bindings: {
        ORIGIN_URL: origin.url,
        TOKEN_URL: `${tokenEndpoint.url}?grant_type=client_credentials`,
        CLIENT_ID,
        CLIENT_SECRET,
        API_KEY,
        JWT_ALGORITHMS: 'ES256',
        JWT_LEEWAY_SECONDS: '60',
        JWT_PROVIDERS: JSON.stringify(providers),
      },
    });
    gw = stack.gw;
  });
  after(async () => {
    await gw?.dispose();
    await Promise.all([origin?.close(), tokenEndpoint?.close(), idp?.close()]);
  });
  beforeEach(() => origin.reset());

  const tokenFor = (tenant, claims = {}) => signJwt(key, { issuer: iss(tenant), claims });
  const call = async (tenant, claims) => gw.fetch('/x', { headers: withJwt(await tokenFor(tenant, claims)) }).then(read);

  test('a well-behaved issuer is discovered; RFC 8414 is asked after a 404', async () => {
    assert.equal((await call('good')).status, 200);
    const fallback = await call('fallback');
    assert.equal(fallback.status, 200, fallback.text);
    assert.ok(idp.hits.includes('/fallback/.well-known/openid-configuration'));
    assert.ok(idp.hits.includes('/.well-known/oauth-authorization-server/fallback'));
    assert.ok(!idp.hits.includes('/.well-known/oauth-authorization-server/good'), 'only after a 404');
  });

  for (const [tenant, code, configError] of [
    ['mismatch', 'discovery_issuer_mismatch', /another issuer/],
    ['httpjwks', 'discovery_jwks_uri', /jwks_uri/],
    ['oversize', 'discovery_too_large', undefined],
    ['redirect', 'discovery_status', /redirect or 404/],
    ['down', 'discovery_status', undefined],
  ]) {
    test(`${tenant}: every token of that provider is refused (503), nothing forwarded, the log says ${code}`, async () => {
      const res = await call(tenant);
      assert.equal(res.status, 503, res.text);
      assert.match(res.json.type, /key-set-unavailable$/);
      assert.ok(res.headers.get('retry-after'));
      assert.equal(origin.count, 0);
      const log = await logOf(gw, res);
      assert.equal(log?.jwks, code);
      if (configError) assert.match(log?.config_error ?? '', configError);
      else assert.equal(log?.config_error, undefined);
      assert.ok(!idp.hits.some((u) => u.startsWith('/redirect-target')), 'no redirect followed');
      assert.ok(!stack.gw.output().includes('keys.example.com'), 'the public http jwks_uri is never fetched');
    });
  }

  test('the document down with a held copy: the cron refresh fails and the copy keeps serving', async () => {
    assert.equal((await call('cached')).status, 200);
    const before = idp.hits.filter((u) => u === '/cached/.well-known/openid-configuration').length;
    down.add('cached');
    try {
      // Fresh for 60 s; the scheduled run looks 10 minutes ahead, so it refetches, and fails.
      await scheduled(gw);
      const after = idp.hits.filter((u) => u === '/cached/.well-known/openid-configuration').length;
      assert.ok(after > before, 'the scheduled run asked for the document');
      const res = await call('cached');
      assert.equal(res.status, 200, res.text);
    } finally {
      down.delete('cached');
    }
  });

  test('leeway_seconds per provider replaces JWT_LEEWAY_SECONDS', async () => {
    const expired = { exp: nowSecs() - 30 };
    // JWT_LEEWAY_SECONDS=60 covers 30 s; the provider with leeway_seconds 0 does not.
    assert.equal((await call('cached', expired)).status, 200);
    const strict = await call('good', expired);
    assert.equal(strict.status, 401, strict.text);
    assert.equal((await logOf(gw, strict))?.outcome, 'token_expired');
    const older = { exp: nowSecs() - 300 };
    assert.equal((await call('cached', older)).status, 401);
    assert.equal((await call('lenient', older)).status, 200, 'leeway_seconds 600');
  });
});

describe('JWT_HEADER: Cloudflare Access as the identity provider', () => {
  const CF = 'Cf-Access-Jwt-Assertion';
  const SPELLINGS = ['cf-access-jwt-assertion', 'CF-ACCESS-JWT-ASSERTION', 'cf_access_jwt_assertion', 'Cf_Access-Jwt_Assertion'];
  let s, idp, session;

  before(async () => {
    idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET });
    session = idp.login('cust-1');
    s = await startStack({
      bindings: {
        JWT_HEADER: CF,
        INTROSPECTION_URL: idp.url,
        ROUTES: JSON.stringify([
          { prefix: '/public', auth: 'public' },
          { prefix: '/opaque', auth: 'opaque' },
          { prefix: '/' },
        ]),
      },
    });
  });
  after(async () => {
    await s?.close();
    await idp?.close();
  });
  beforeEach(() => s.origin.reset());

  test('the bare token in the header authenticates; the origin gets it in customer-auth, never the header', async () => {
    for (const name of SPELLINGS.slice(0, 2)) {
      const res = await s.gw.raw('/jwt', { headers: { [name]: s.jwt } });
      assert.equal(res.status, 200, `${name}: ${res.body}`);
      const seen = s.origin.last();
      assert.equal(seen.headers['customer-auth'], `JWT ${s.jwt}`);
      for (const spelling of SPELLINGS) assert.equal(seen.headers[spelling.toLowerCase()], undefined, spelling);
    }
    // Read after customer-auth and Authorization: the same token there is one identifier.
    const same = await s.gw.raw('/jwt', { headers: { 'customer-auth': `JWT ${s.jwt}`, [CF]: s.jwt } });
    assert.equal(same.status, 200);
  });

  test('a different identifier anywhere else, or the header twice, is 400 two_identifiers', async () => {
    const other = await signJwt(s.key, { claims: { sub: 'someone-else' } });
    const cases = [
      { 'customer-auth': `JWT ${other}`, [CF]: s.jwt },
      { authorization: `Bearer ${other}`, [CF]: s.jwt },
      { [CF]: s.jwt, cookie: `theme=dark` , 'customer-auth': `Session ${session}` },
    ];
    for (const [i, headers] of cases.entries()) {
      const res = await s.gw.raw('/jwt', { headers });
      assert.equal(res.status, 400, `case ${i}: ${res.body}`);
      const log = await requestLog(s.gw, res.headers['x-request-id']);
      assert.equal(log?.outcome, 'two_identifiers', `case ${i}`);
    }
    // Sent twice: the platform joins the two fields into one value, which is no bare token.
    const twice = await s.gw.raw('/jwt', { headers: { [CF]: [s.jwt, other] } });
    assert.equal(twice.status, 400, String(twice.body));
    // On an opaque route too: the session in customer-auth, a JWT in the header.
    const opaque = await s.gw.raw('/opaque', { headers: { 'customer-auth': `Session ${session}`, [CF]: s.jwt } });
    assert.equal(opaque.status, 400, String(opaque.body));
    // A value that is no bare token is malformed, never skipped.
    const malformed = await s.gw.raw('/jwt', { headers: { [CF]: `Bearer ${s.jwt}` } });
    assert.equal(malformed.status, 400);
    assert.equal(s.origin.count, 0);
  });

  test('every spelling of the header is removed before forwarding on public, jwt and opaque routes', async () => {
    const planted = 'planted-assertion-value';
    const all = Object.fromEntries(SPELLINGS.map((n, i) => [n, `${planted}-${i}`]));
    const routes = [
      ['/public/x', {}],
      ['/opaque/x', { 'customer-auth': `Session ${session}` }],
    ];
    for (const [path, auth] of routes) {
      // Underscore spellings are no source (not the configured name) but are still removed.
      const headers = path.startsWith('/public') ? all : { ...auth, cf_access_jwt_assertion: planted, 'Cf_Access-Jwt_Assertion': planted };
      const res = await s.gw.raw(path, { headers });
      assert.equal(res.status, 200, `${path}: ${res.body}`);
      const seen = s.origin.last();
      assert.ok(!JSON.stringify(seen.rawHeaders).includes(planted), `${path}: ${JSON.stringify(seen.rawHeaders)}`);
    }
    const jwtRoute = await s.gw.raw('/jwt', { headers: { [CF]: s.jwt, cf_access_jwt_assertion: planted } });
    assert.equal(jwtRoute.status, 200, String(jwtRoute.body));
    assert.ok(!JSON.stringify(s.origin.last().rawHeaders).includes(planted));
    assert.ok(!JSON.stringify(s.origin.last().rawHeaders).toLowerCase().includes('cf-access-jwt-assertion'));
  });
});
