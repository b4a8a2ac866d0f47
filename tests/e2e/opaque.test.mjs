// `opaque` routes: customer identifiers that are not JWTs (cookie sessions), vouched for by a
// loopback RFC 7662 introspection endpoint that counts its calls; scopes from its answers; and
// the customer id the origin gets (CUSTOMER_ID_HEADER).

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, ISSUER, read, sleep, startStack, withJwt } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { signJwt } from './servers.mjs';

const ROUTES = [
  { prefix: '/public', auth: 'public' },
  { prefix: '/session/scoped', auth: 'opaque', scopes: ['profile:read'] },
  { prefix: '/session', auth: 'opaque' },
  { prefix: '/account', auth: 'jwt' },
];
const CUSTOMER_ID_KEY = randomBytes(32).toString('base64');
const INSUFFICIENT = 'Bearer realm="edge-auth-proxy", error="insufficient_scope", scope="profile:read"';

/** startStack with an introspection endpoint, opaque routes and a customer id header. */
async function stack({ bindings = {}, idp: idpOptions = {} } = {}) {
  const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER, ...idpOptions });
  let s;
  try {
    s = await startStack({
      bindings: {
        ROUTES: JSON.stringify(ROUTES),
        INTROSPECTION_URL: idp.url,
        SESSION_COOKIE: 'sid',
        CUSTOMER_ID_HEADER: 'X-Customer-Id',
        CUSTOMER_ID_KEY,
        ...bindings,
      },
    });
  } catch (err) {
    await idp.close();
    throw err;
  }
  return {
    ...s,
    idp,
    async close() {
      await s.close();
      await idp.close();
    },
  };
}

const get = (gw, path, headers = {}) => gw.fetch(path, { headers }).then(read);

function assertBearer401(res, error) {
  assert.equal(res.status, 401, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const challenge = res.headers.get('www-authenticate') ?? '';
  if (error) assert.match(challenge, new RegExp(`^Bearer realm="edge-auth-proxy", error="${error}"`));
  else assert.equal(challenge, 'Bearer realm="edge-auth-proxy"');
}

describe('opaque customer identifiers', () => {
  test('header and cookie identifiers reach the origin as they came, with the three credentials', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp, origin } = s;
    const sid = idp.login('cust-1');

    const cases = [
      [{ 'customer-auth': `Session ${sid}` }, `Session ${sid}`],
      [{ authorization: `Bearer ${sid}` }, `Bearer ${sid}`],
      [{ cookie: `theme=dark; sid=${sid}` }, `Cookie ${sid}`],
    ];
    for (const [headers, customerAuth] of cases) {
      const res = await get(gw, '/session/profile', headers);
      assert.equal(res.status, 200, res.text);
      const seen = origin.last().headers;
      assert.equal(seen['customer-auth'], customerAuth);
      assert.equal(seen.authorization, `Bearer ${s.token.token}`, "the gateway's access token, not the caller's Bearer");
      assert.equal(seen['api-key'], API_KEY);
      if (headers.cookie) assert.equal(seen.cookie, headers.cookie, 'the cookie passes as sent');
    }

    assert.equal(idp.count, 1, 'one call for three requests');
    const [call] = idp.calls;
    assert.equal(call.method, 'POST');
    assert.equal(call.token, sid);
    assert.match(call.headers['content-type'], /^application\/x-www-form-urlencoded/);
    assert.equal(call.headers.accept, 'application/json');
    assert.equal(call.authMethod, 'post');
    assert.equal(call.form.client_id, CLIENT_ID);

    const lines = await gw.waitForRequestLogs(3);
    assert.deepEqual(
      lines.map((l) => [l.identity, l.introspection, l.status]),
      [
        ['opaque', 'endpoint', 200],
        ['opaque', 'memory', 200],
        ['opaque', 'memory', 200],
      ],
    );

    // The cookie twice is refused, as JWT_COOKIE is.
    const twice = await get(gw, '/session/profile', { cookie: `sid=${sid}; sid=${sid}` });
    assert.equal(twice.status, 400);
    assert.equal(origin.count, 3);
  });

  test('the introspection request authenticates with client_secret_basic when TOKEN_CLIENT_AUTH says so', async (t) => {
    const s = await stack({ bindings: { TOKEN_CLIENT_AUTH: 'client_secret_basic' } });
    t.after(() => s.close());
    const sid = s.idp.login('cust-1');
    const res = await get(s.gw, '/session/x', { cookie: `sid=${sid}` });
    assert.equal(res.status, 200, res.text);
    assert.equal(s.idp.calls[0].authMethod, 'basic');
    assert.equal(s.idp.calls[0].form.client_secret, undefined, 'the secret is not also in the body');
  });

  test('30 uses of one identifier, 10 of them concurrent, cost one introspection call', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const sid = s.idp.login('cust-1');
    const first = await Promise.all(Array.from({ length: 10 }, () => get(s.gw, '/session/x', { cookie: `sid=${sid}` })));
    for (const res of first) assert.equal(res.status, 200, res.text);
    for (let i = 0; i < 20; i++) assert.equal((await get(s.gw, '/session/x', { authorization: `Bearer ${sid}` })).status, 200);
    assert.equal(s.idp.callsFor(sid), 1, `${s.idp.callsFor(sid)} calls`);
    assert.equal(s.origin.count, 30);
  });

  test('no identifier is 401 with a bare challenge; an inactive one is 401 invalid_token and not re-asked within 10 s', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    assertBearer401(await get(s.gw, '/session/x'));

    const dead = 'sess-unknown-0123456789';
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => get(s.gw, '/session/x', { cookie: `sid=${dead}` })));
    for (const res of concurrent) assertBearer401(res, 'invalid_token');
    for (let i = 0; i < 5; i++) assertBearer401(await get(s.gw, '/session/x', { 'customer-auth': `Session ${dead}` }), 'invalid_token');
    assert.equal(s.idp.callsFor(dead), 1, `${s.idp.callsFor(dead)} calls`);

    // A session that became active meanwhile is still refused within the 10 s (no new call).
    s.idp.sessions.set(dead, { iss: ISSUER, sub: 'late', exp: Math.floor(Date.now() / 1000) + 600 });
    assertBearer401(await get(s.gw, '/session/x', { cookie: `sid=${dead}` }), 'invalid_token');
    assert.equal(s.origin.count, 0);
  });

  for (const [mode, extra, what] of [
    ['down', {}, 'dropping the connection'],
    ['garbage', {}, 'answering HTML'],
    ['500', {}, 'answering 500'],
    ['slow', { delayMs: 3000 }, 'slower than INTROSPECTION_TIMEOUT_MS'],
  ]) {
    test(`an introspection endpoint ${what}: 503 with Retry-After, fast, and not called for every request`, async (t) => {
      const s = await stack({ bindings: { INTROSPECTION_TIMEOUT_MS: '300' }, idp: { mode, ...extra } });
      t.after(() => s.close());
      const sid = s.idp.login('cust-1');
      const started = Date.now();
      const res = await get(s.gw, '/session/x', { cookie: `sid=${sid}` });
      const took = Date.now() - started;
      assert.equal(res.status, 503, res.text);
      assert.match(res.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.ok(took < 2000, `took ${took} ms`);
      // A burst while it backs off, this session and others: one probe for all of it.
      const burst = await Promise.all(
        Array.from({ length: 10 }, (_, i) => get(s.gw, '/session/x', { cookie: `sid=${i === 0 ? sid : `other-${i}`}` })),
      );
      for (const again of burst) {
        assert.equal(again.status, 503);
        assert.match(again.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
      }
      assert.ok(s.idp.count <= 2, `${s.idp.count} calls for 11 requests`);
      assert.equal(s.origin.count, 0, 'never let through unchecked');
      const [line] = await s.gw.waitForRequestLogs(1);
      assert.match(line.introspection_error, /^introspection_/);
    });
  }

  test('scopes from the introspection answer are enforced: 403 insufficient_scope, the origin not called', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const reader = s.idp.login('r', { scope: 'openid profile:read' });
    const other = s.idp.login('o', { scope: 'profile profile:write' });
    for (let i = 0; i < 2; i++) {
      const res = await get(s.gw, '/session/scoped/x', { cookie: `sid=${other}`, 'x-request-id': `scoped-${i}` });
      assert.equal(res.status, 403, res.text);
      assert.equal(res.headers.get('www-authenticate'), INSUFFICIENT);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    }
    assert.equal(s.origin.count, 0);
    assert.equal((await get(s.gw, '/session/scoped/x', { cookie: `sid=${reader}` })).status, 200);
    assert.equal((await get(s.gw, '/session/x', { cookie: `sid=${other}` })).status, 200, 'fine where no scope is asked');
    const lines = await s.gw.waitForRequestLogs(4);
    const refused = lines.find((l) => l.request_id === 'scoped-1');
    assert.equal(refused.policy, 'scopes');
    assert.equal(refused.introspection, 'memory', 'checked on a memory hit too');
  });

  test('the customer id is one per customer across tokens and channels, and a caller-sent one never passes', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp, origin, key } = s;
    const idOf = async (path, headers) => {
      const res = await get(gw, path, { ...headers, 'x-customer-id': 'forged', x_customer_id: 'forged' });
      assert.equal(res.status, 200, res.text);
      const raw = origin.last().rawHeaders;
      const names = raw.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replace(/_/g, '-'));
      assert.equal(names.filter((n) => n === 'x-customer-id').length, 1, `one x-customer-id: ${raw}`);
      return origin.last().headers['x-customer-id'];
    };
    const a1 = await idOf('/session/x', { cookie: `sid=${idp.login('cust-A')}` });
    const a2 = await idOf('/session/x', { cookie: `sid=${idp.login('cust-A')}` });
    const aJwt1 = await idOf('/account/x', withJwt(await signJwt(key, { claims: { sub: 'cust-A' } })));
    const aJwt2 = await idOf('/account/x', withJwt(await signJwt(key, { claims: { sub: 'cust-A', jti: 'other' } })));
    const b = await idOf('/session/x', { cookie: `sid=${idp.login('cust-B')}` });
    const bJwt = await idOf('/account/x', withJwt(await signJwt(key, { claims: { sub: 'cust-B' } })));

    assert.match(a1, /^[A-Za-z0-9_-]{43}$/, 'unpadded base64url of 32 bytes');
    assert.equal(a1, a2, 'two sessions of one customer');
    assert.equal(a1, aJwt1, 'a session and a JWT of one customer');
    assert.equal(aJwt1, aJwt2, 'two JWTs of one customer');
    assert.equal(b, bJwt);
    assert.notEqual(a1, b, 'two customers');
    assert.notEqual(a1, 'forged');

    // Public routes get no customer id, and no caller copy either.
    const res = await get(gw, '/public/ping', { 'x-customer-id': 'forged', x_customer_id: 'forged', 'X_CUSTOMER-ID': 'forged', x_other_id: 'kept' });
    assert.equal(res.status, 200);
    const raw = origin.last().rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.ok(raw.includes('x_other_id'), `underscored names do reach the origin (so the check below can fail): ${raw}`);
    const names = raw.map((n) => n.replace(/_/g, '-'));
    assert.ok(!names.includes('x-customer-id'), `a caller copy reached the origin: ${names}`);
  });

  test('the identifier is in no log line and nowhere in KV', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp } = s;
    const active = idp.login('cust-1', { scope: 'openid' });
    const inactive = `sess-never-issued-${randomBytes(8).toString('hex')}`;
    const plan = [
      ['/session/x', { cookie: `sid=${active}` }],
      ['/session/x', { authorization: `Bearer ${active}` }],
      ['/session/scoped', { cookie: `sid=${active}` }],
      ['/session/x', { 'customer-auth': `Session ${inactive}` }],
      ['/session/x', { cookie: `sid=${inactive}; sid=${inactive}` }],
    ];
    for (const [path, headers] of plan) await get(gw, path, headers);
    idp.setMode('garbage');
    await get(gw, '/session/x', { cookie: `sid=${active}x` });
    await gw.waitForRequestLogs(plan.length + 1);
    await sleep(100);

    const secrets = [active, inactive, `${active}x`];
    const digests = secrets.map((id) => createHash('sha256').update(id).digest('hex'));
    const output = gw.output();
    for (const needle of [...secrets, ...digests]) assert.ok(!output.includes(needle), `the console holds ${needle.slice(0, 12)}…`);
    const entries = await gw.kvEntries();
    assert.ok(entries.length >= 1, 'the access token is cached in KV (the scan sees entries)');
    for (const { name, value } of entries) {
      for (const needle of [...secrets, ...digests]) {
        assert.ok(!name.includes(needle) && !(value ?? '').includes(needle), `KV ${name} holds an identifier`);
      }
    }
  });
});
