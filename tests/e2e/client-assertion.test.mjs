// TOKEN_CLIENT_AUTH=private_key_jwt against oidc-provider (a certified OpenID provider) on
// loopback, as the real token and introspection endpoint: clients registered with
// `token_endpoint_auth_method: 'private_key_jwt'` and RSA (RS256, PS256), EC P-256 and Ed25519
// keys. The assertions are captured as the provider received them (its
// `assertJwtClientAuthClaimsAndHeader` hook runs after it verified the signature) and checked;
// the origin sees the provider's token. Then what goes wrong: another key than the registered
// one, a public JWK as CLIENT_PRIVATE_KEY, a provider that needs a `kid`; TOKEN_PARAMS'
// `resource` honoured by the provider's resource indicators (RFC 8707); and the token
// coordinator (Durable Object) signing its own token requests.

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import { exportJWK, generateKeyPair, decodeJwt } from 'jose';
import Provider, { errors } from 'oidc-provider';

import { API_KEY, read, requestLog, startGateway, startStack, withJwt } from './harness.mjs';
import { makeKey, signJwt, startOrigin } from './servers.mjs';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const NEVER_SENT = 'a-client-secret-that-must-never-travel-9Xq';
const RESOURCE = 'https://orders.example/api';

/** A private JWK for CLIENT_PRIVATE_KEY and its public JWK for the provider's registration. */
async function clientKey(alg, kid) {
  const options = alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {};
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...options });
  const extra = kid ? { kid } : {};
  return {
    alg,
    private: { ...(await exportJWK(privateKey)), alg, ...extra },
    public: { ...(await exportJWK(publicKey)), alg, use: 'sig', ...extra },
  };
}

/** oidc-provider on loopback with `clients`; records every client assertion it accepted. */
async function startProvider(clients) {
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
  const signing = { ...(await exportJWK(privateKey)), kid: 'op-1', alg: 'RS256', use: 'sig' };
  const assertions = [];
  const answers = [];
  const provider = new Provider(issuer, {
    clients: [
      ...clients,
      // The test's own client, to get opaque tokens to introspect.
      {
        client_id: 'helper',
        client_secret: 'helper-secret',
        grant_types: ['client_credentials'],
        redirect_uris: [],
        response_types: [],
      },
    ],
    jwks: { keys: [signing] },
    cookies: { keys: ['client-assertion-e2e'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      resourceIndicators: {
        enabled: true,
        getResourceServerInfo: (ctx, resource) => {
          if (resource !== RESOURCE) throw new errors.InvalidTarget();
          return { scope: '', audience: RESOURCE, accessTokenFormat: 'jwt', accessTokenTTL: 600, jwt: { sign: { alg: 'RS256' } } };
        },
      },
    },
    // Runs once the assertion's signature, iss, aud and exp are verified: what the endpoint
    // received, recorded. A client named `needs-kid-*` stands for a provider that needs one.
    async assertJwtClientAuthClaimsAndHeader(ctx, claims, header, client) {
      if (client.clientId.startsWith('needs-kid') && !header.kid) {
        throw new errors.InvalidClientAuth('kid required');
      }
      assertions.push({ path: ctx.path, client: client.clientId, claims, header, body: { ...ctx.oidc.body }, authorization: ctx.get('authorization') });
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.method === 'POST') answers.push({ path: ctx.path, status: ctx.status, body: ctx.body });
  });
  server.on('request', provider.callback());
  return {
    issuer,
    tokenUrl: `${issuer}/token`,
    introspectionUrl: `${issuer}/token/introspection`,
    assertions,
    answers,
    /** An opaque access token of the helper client: a session id to introspect. */
    async opaqueToken() {
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from('helper:helper-secret').toString('base64')}`,
        },
        body: 'grant_type=client_credentials',
      });
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      return body.access_token;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

const registered = (clientId, ...keys) => ({
  client_id: clientId,
  token_endpoint_auth_method: 'private_key_jwt',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  jwks: { keys: keys.map((k) => k.public) },
});

/** The assertion claims the contract asks for, checked as the provider received them. */
function assertClaims(rec, clientId, aud) {
  const { claims } = rec;
  assert.equal(claims.iss, clientId);
  assert.equal(claims.sub, clientId);
  assert.equal(claims.aud, aud);
  assert.equal(typeof claims.jti, 'string');
  assert.ok(claims.jti.length >= 22, claims.jti);
  assert.ok(Number.isInteger(claims.iat) && Number.isInteger(claims.exp));
  assert.ok(claims.exp > claims.iat && claims.exp - claims.iat <= 60, JSON.stringify(claims));
  assert.ok(Math.abs(claims.iat - Date.now() / 1000) < 30, 'iat is now');
  assert.equal(rec.body.client_assertion_type, ASSERTION_TYPE);
  assert.equal(rec.body.client_id, clientId);
  assert.equal(rec.body.client_secret, undefined, 'no client secret in the form');
  assert.equal(rec.authorization, '', 'no HTTP Basic');
}

describe('private_key_jwt against oidc-provider', () => {
  const kinds = [
    ['RS256', 'rsa-client', 'rsa-1'],
    ['PS256', 'ps-client', undefined],
    ['ES256', 'ec-client', 'ec-1'],
    ['EdDSA', 'ed-client', undefined],
  ];
  let op, origin, customerKey, jwt;
  const keys = {};
  let other;
  let kidless;

  before(async () => {
    for (const [alg, clientId, kid] of kinds) keys[clientId] = await clientKey(alg, kid);
    other = await clientKey('ES256', 'ec-1');
    // Two EC keys without kid registered to one client: oidc-provider tries each.
    kidless = [await clientKey('ES256'), await clientKey('ES256')];
    const needsKid = await clientKey('ES256', 'nk-1');
    keys['needs-kid'] = needsKid;
    [op, origin, customerKey] = await Promise.all([
      startProvider([
        ...kinds.map(([, clientId]) => registered(clientId, keys[clientId])),
        registered('kidless-client', ...kidless),
        registered('needs-kid', needsKid),
      ]),
      startOrigin(),
      makeKey('RS256'),
    ]);
    jwt = await signJwt(customerKey);
  });

  after(async () => {
    await Promise.all([op?.close(), origin?.close()]);
  });

  /** A gateway in front of the provider and the origin, authenticating as `clientId`. */
  function settings(clientId, privateJwk, extra = {}) {
    return {
      ORIGIN_URL: origin.url,
      TOKEN_URL: op.tokenUrl,
      TOKEN_CLIENT_AUTH: 'private_key_jwt',
      CLIENT_ID: clientId,
      CLIENT_PRIVATE_KEY: JSON.stringify(privateJwk),
      CLIENT_SECRET: NEVER_SENT,
      API_KEY,
      JWT_ALGORITHMS: 'RS256',
      JWT_JWKS: JSON.stringify({ keys: [customerKey.publicJwk] }),
      JWT_ISSUER: 'https://issuer.test/',
      JWT_AUDIENCE: 'profile-api',
      INTROSPECTION_URL: op.introspectionUrl,
      SESSION_COOKIE: 'sid',
      ROUTES: JSON.stringify([{ prefix: '/session', auth: 'opaque' }, { prefix: '/' }]),
      ...extra,
    };
  }

  const since = (list, n) => list.slice(n);
  const tokenAnswers = (n) => since(op.answers, n).filter((a) => a.path === '/token');

  for (const [alg, clientId] of kinds) {
    test(`${alg}: the token endpoint accepts the assertion, a fresh jti per call, the origin gets the provider's token`, async () => {
      const gw = await startGateway({ bindings: settings(clientId, keys[clientId].private) });
      try {
        const a0 = op.assertions.length;
        const n0 = op.answers.length;
        origin.reset();
        const first = await read(await gw.fetch('/orders/1', { headers: withJwt(jwt) }));
        assert.equal(first.status, 200, first.text);
        const issued = tokenAnswers(n0);
        assert.equal(issued.length, 1);
        assert.equal(issued[0].status, 200, JSON.stringify(issued[0].body));
        const firstToken = issued[0].body.access_token;
        assert.equal(origin.last().headers.authorization, `Bearer ${firstToken}`);
        // The origin refuses it: the gateway gets another token, with another assertion.
        origin.rejectToken(firstToken);
        const second = await read(await gw.fetch('/orders/2', { headers: withJwt(jwt) }));
        assert.equal(second.status, 200, second.text);
        const secondToken = tokenAnswers(n0)[1]?.body?.access_token;
        assert.ok(secondToken && secondToken !== firstToken);
        assert.equal(origin.last().headers.authorization, `Bearer ${secondToken}`);
        const seen = since(op.assertions, a0);
        assert.equal(seen.length, 2);
        for (const rec of seen) {
          assert.equal(rec.path, '/token');
          assert.equal(rec.client, clientId);
          assert.equal(rec.header.alg, alg);
          assert.equal(rec.header.kid, keys[clientId].private.kid);
          assertClaims(rec, clientId, op.tokenUrl);
        }
        assert.notEqual(seen[0].claims.jti, seen[1].claims.jti, 'a fresh jti per call');
        assert.ok(!gw.output().includes(keys[clientId].private.d), 'the key never in a log line');
        assert.ok(!gw.output().includes(NEVER_SENT));
        assert.equal(seen[0].body.client_assertion.split('.').length, 3);
        const kv = JSON.stringify(await gw.kvEntries());
        assert.ok(kv.includes('access-token:v1:'), 'the token is cached in KV');
        for (const secret of [keys[clientId].private.d, NEVER_SENT, seen[0].body.client_assertion]) {
          assert.ok(!kv.includes(secret), 'neither key, secret nor assertion in KV');
        }
      } finally {
        await gw.dispose();
      }
    });

    test(`${alg}: introspection at the provider is authenticated with an assertion for its own URL`, async () => {
      const gw = await startGateway({ bindings: settings(clientId, keys[clientId].private) });
      try {
        const sid = await op.opaqueToken();
        const a0 = op.assertions.length;
        const res = await read(await gw.fetch('/session/me', { headers: { cookie: `sid=${sid}` } }));
        assert.equal(res.status, 200, res.text);
        const seen = since(op.assertions, a0);
        const introspections = seen.filter((r) => r.path === '/token/introspection');
        assert.equal(introspections.length, 1);
        assertClaims(introspections[0], clientId, op.introspectionUrl);
        assert.equal(introspections[0].body.token, sid);
        const unknown = await read(await gw.fetch('/session/me', { headers: { cookie: 'sid=not-a-token-of-the-provider' } }));
        assert.equal(unknown.status, 401, 'inactive per the provider');
      } finally {
        await gw.dispose();
      }
    });
  }

  test('TOKEN_ASSERTION_AUDIENCE (the issuer) is the aud at both endpoints, and the provider accepts it', async () => {
    const gw = await startGateway({ bindings: settings('ec-client', keys['ec-client'].private, { TOKEN_ASSERTION_AUDIENCE: op.issuer }) });
    try {
      const sid = await op.opaqueToken();
      const a0 = op.assertions.length;
      assert.equal((await gw.fetch('/session/me', { headers: { cookie: `sid=${sid}` } })).status, 200);
      const seen = since(op.assertions, a0);
      assert.deepEqual(seen.map((r) => r.path).sort(), ['/token', '/token/introspection']);
      for (const rec of seen) assertClaims(rec, 'ec-client', op.issuer);
    } finally {
      await gw.dispose();
    }
  });

  test('another key than the registered one: the provider refuses the client, the gateway answers 503 and logs what to fix', async () => {
    const gw = await startGateway({ bindings: settings('ec-client', other.private) });
    try {
      const n0 = op.answers.length;
      const res = await read(await gw.fetch('/orders/1', { headers: withJwt(jwt, { 'x-request-id': 'wrong-key' }) }));
      assert.equal(res.status, 503, res.text);
      assert.equal(res.headers.get('retry-after'), '60');
      const answer = tokenAnswers(n0)[0];
      assert.equal(answer.status, 401);
      assert.equal(answer.body.error, 'invalid_client');
      const line = await requestLog(gw, 'wrong-key');
      assert.equal(line.token_error, 'token_client_rejected');
      assert.match(line.config_error, /CLIENT_PRIVATE_KEY/);
      // Introspection with the wrong key: refused too, 503 (not 401: the caller is not at fault).
      const sid = await op.opaqueToken();
      const session = await read(await gw.fetch('/session/me', { headers: { cookie: `sid=${sid}` } }));
      assert.equal(session.status, 503, session.text);
      assert.ok(!gw.output().includes(other.private.d));
    } finally {
      await gw.dispose();
    }
  });

  test('a public JWK as CLIENT_PRIVATE_KEY: 500 naming CLIENT_PRIVATE_KEY, nothing sent', async () => {
    const gw = await startGateway({ bindings: settings('ec-client', keys['ec-client'].public) });
    try {
      const n0 = op.answers.length;
      const res = await read(await gw.fetch('/orders/1', { headers: withJwt(jwt) }));
      assert.equal(res.status, 500);
      assert.match(res.json.detail, /CLIENT_PRIVATE_KEY is a public key/);
      assert.ok(!res.text.includes(keys['ec-client'].public.x));
      assert.equal(op.answers.length, n0, 'the token endpoint was not called');
    } finally {
      await gw.dispose();
    }
  });

  test('a key without kid: oidc-provider tries each registered key; a provider that needs a kid refuses it (503, logged)', async () => {
    const a0 = op.assertions.length;
    const { kid: _, ...second } = kidless[1].private;
    const ok = await startGateway({ bindings: settings('kidless-client', second) });
    try {
      const res = await read(await ok.fetch('/orders/1', { headers: withJwt(jwt) }));
      assert.equal(res.status, 200, res.text);
      assert.equal(since(op.assertions, a0)[0].header.kid, undefined, 'no kid in the header');
    } finally {
      await ok.dispose();
    }
    const { kid: __, ...withoutKid } = keys['needs-kid'].private;
    const refused = await startGateway({ bindings: settings('needs-kid', withoutKid) });
    try {
      const res = await read(await refused.fetch('/orders/1', { headers: withJwt(jwt, { 'x-request-id': 'no-kid' }) }));
      assert.equal(res.status, 503, res.text);
      assert.equal((await requestLog(refused, 'no-kid')).token_error, 'token_client_rejected');
    } finally {
      await refused.dispose();
    }
    const named = await startGateway({ bindings: settings('needs-kid', keys['needs-kid'].private) });
    try {
      assert.equal((await named.fetch('/orders/1', { headers: withJwt(jwt) })).status, 200, 'the same key with its kid');
    } finally {
      await named.dispose();
    }
  });

  test('TOKEN_PARAMS resource is honoured by the provider: the origin gets a JWT for that audience', async () => {
    const gw = await startGateway({
      bindings: settings('ed-client', keys['ed-client'].private, { TOKEN_PARAMS: `resource=${encodeURIComponent(RESOURCE)}` }),
    });
    try {
      const a0 = op.assertions.length;
      const res = await read(await gw.fetch('/orders/1', { headers: withJwt(jwt) }));
      assert.equal(res.status, 200, res.text);
      const bearer = /^Bearer (.+)$/.exec(origin.last().headers.authorization)[1];
      const claims = decodeJwt(bearer);
      assert.equal(claims.aud, RESOURCE);
      assert.equal(claims.client_id, 'ed-client');
      assert.equal(since(op.assertions, a0)[0].body.resource, RESOURCE);
    } finally {
      await gw.dispose();
    }
  });

  test('the token coordinator (Durable Object) signs its own token request', async () => {
    const stack = await startStack({
      servers: false,
      size: 2,
      coordinator: true,
      bindings: settings('rsa-client', keys['rsa-client'].private),
    });
    try {
      const a0 = op.assertions.length;
      for (const i of [0, 1]) {
        const res = await read(await stack.fleet.fetch(i, '/orders/1', { headers: withJwt(jwt) }));
        assert.equal(res.status, 200, res.text);
      }
      const seen = since(op.assertions, a0);
      assert.equal(seen.length, 1, 'one token request for the deployment');
      assertClaims(seen[0], 'rsa-client', op.tokenUrl);
      const sources = stack.fleet.requestLogs().map((l) => l.token_source);
      assert.ok(sources.includes('coordinator'), JSON.stringify(sources));
    } finally {
      await stack.close();
    }
  });
});
