// What the caller sends that must never stand in for a credential (underscore aliases, method
// overrides, a JWT cookie sent twice), header values as bytes in both directions, a setting
// that cannot be a header value, and a key rotation that shortens max-age. Issue 17: a
// `Connection` header never removes a field the gateway sets, and identity headers belong to
// the gateway on every route.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, baseBindings, read, startStack, withJwt } from './harness.mjs';
import { jwks, makeKey, signJwt, startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

const ROUTES = JSON.stringify([
  { prefix: '/auth/customer_authenticate', auth: 'public', methods: ['POST'] },
  { prefix: '/account', auth: 'jwt', methods: ['POST'] },
]);

/** A CGI/WSGI-style origin maps `_` to `-` (and case away): these are credentials to it. */
const FORGED = {
  customer_auth: 'JWT forged-customer',
  Customer_Auth: 'JWT forged-customer-2',
  api_key: 'forged-key',
  API_KEY: 'forged-key-2',
  'X-HTTP-Method-Override': 'DELETE',
  X_HTTP_Method_Override: 'DELETE',
  'X-HTTP-Method': 'PUT',
  x_http_method: 'PUT',
  'X-Method-Override': 'PATCH',
  x_method_override: 'PATCH',
  x_request_id: 'forged-request-id',
};
const REFUSED = new Set(['authorization', 'customer-auth', 'api-key', 'x-http-method-override', 'x-http-method', 'x-method-override', 'x-request-id']);

/** `rawHeaders` as `[lower-case name, value]` pairs. */
const pairs = (raw) => Array.from({ length: raw.length / 2 }, (_, i) => [raw[2 * i].toLowerCase(), raw[2 * i + 1]]);

/** Sends `head` (request line and header lines) on a plain socket; resolves the status. */
function rawHead(gw, head) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(gw.url.port), gw.url.hostname, () => socket.end(`${head.join('\r\n')}\r\nConnection: close\r\n\r\n`));
    const parts = [];
    socket.on('data', (d) => parts.push(d));
    socket.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(Buffer.concat(parts).toString())?.[1])));
    socket.on('error', reject);
  });
}

describe('header rules', () => {
  let stack, origin, gw, jwt;

  before(async () => {
    stack = await startStack({ bindings: { ROUTES, JWT_COOKIE: 'session' } });
    ({ origin, gw, jwt } = stack);
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  for (const [route, path, withToken] of [
    ['public', '/auth/customer_authenticate', false],
    ['jwt', '/account/getprofile', true],
  ]) {
    test(`aliases and method overrides never reach the origin (${route} route)`, async () => {
      const headers = { ...FORGED, x_custom_underscore: 'kept', ...(withToken ? withJwt(jwt) : {}) };
      const res = await gw.raw(path, { method: 'POST', headers, body: '{}' });
      assert.equal(res.status, 200, res.body.toString());
      assert.equal(origin.count, 1);
      const seen = origin.last();
      assert.equal(seen.method, 'POST', 'no override of the method');
      const got = pairs(seen.rawHeaders);
      // Underscore names do cross workerd: the test would see the aliases if they were sent.
      assert.ok(got.some(([n, v]) => n === 'x_custom_underscore' && v === 'kept'), JSON.stringify(got));
      const forgedValues = new Set(Object.values(FORGED));
      for (const [name, value] of got) {
        assert.ok(!forgedValues.has(value), `the caller's ${name}: ${value} reached the origin`);
        if (REFUSED.has(name.replaceAll('_', '-'))) {
          assert.ok(!name.includes('_'), `${name} reached the origin`);
        }
      }
      const count = (n) => got.filter(([name]) => name === n).length;
      assert.equal(count('authorization'), 1);
      assert.equal(count('api-key'), 1);
      assert.equal(count('x-request-id'), 1);
      assert.equal(seen.headers['api-key'], API_KEY);
      assert.equal(seen.headers['customer-auth'], withToken ? `JWT ${jwt}` : undefined);
      assert.notEqual(seen.headers['x-request-id'], FORGED.x_request_id);
    });
  }

  test('a JWT cookie sent twice is 400 invalid_request and the origin is not called', async () => {
    const cases = [
      { cookie: `session=${jwt}; session=forged` },
      { cookie: `session=; session=${jwt}` },
      // customer-auth holds the token, yet both cookies would reach the origin.
      { ...withJwt(jwt), cookie: `session=${jwt}; session=forged` },
    ];
    for (const headers of cases) {
      const res = await gw.raw('/account/getprofile', { method: 'POST', headers });
      const body = res.body.toString();
      assert.equal(res.status, 400, `${JSON.stringify(headers.cookie)}: ${body}`);
      assert.equal(res.headers['content-type'], 'application/problem+json');
      assert.match(res.headers['www-authenticate'] ?? '', /error="invalid_request"/);
      assert.equal(JSON.parse(body).status, 400);
      assert.ok(!body.includes(jwt) && !body.includes('forged'), body);
    }
    // Two Cookie lines on the wire (node:http joins them with "; "; workerd would join with ", ").
    const status = await rawHead(gw, ['POST /account/getprofile HTTP/1.1', 'Host: gateway.test', 'Content-Length: 0', `Cookie: session=${jwt}`, 'Cookie: session=forged']);
    assert.equal(status, 400);
    assert.equal(origin.count, 0);
    // One cookie is still a source.
    const ok = await gw.raw('/account/getprofile', { method: 'POST', headers: { cookie: `theme=dark; session=${jwt}` } });
    assert.equal(ok.status, 200, ok.body.toString());
    assert.equal(origin.count, 1);
  });

  // The Worker passes workerd's own Headers through in both directions (src/platform/mod.rs):
  // a field it neither sets nor removes crosses byte for byte, raw Latin-1 included. Read into a
  // JS string, a raw 0xE9 would be U+FFFD (cloudflare/workerd#6927) and leave as EF BF BD, which
  // is what these assertions would catch.
  const bytes = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));

  test('a non-ASCII response header reaches the caller byte for byte, UTF-8 and Latin-1', async () => {
    origin.respond((req, res) => {
      // node:http writes header strings as latin1: each char is one byte on the wire.
      res.writeHead(200, {
        'content-type': 'application/pdf',
        'content-disposition': bytes('attachment; filename="r', Buffer.from('\u00e9sum\u00e9', 'utf8'), '.pdf"').toString('latin1'),
        'x-latin1': 'r\u00e9sum\u00e9.pdf',
      });
      res.end('%PDF');
    });
    const res = await gw.raw('/account/getprofile', { method: 'POST', headers: withJwt(jwt) });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), '%PDF');
    const got = Object.fromEntries(pairs(res.rawHeaders));
    assert.deepEqual(
      Buffer.from(got['content-disposition'] ?? '', 'latin1'),
      bytes('attachment; filename="r', Buffer.from('\u00e9sum\u00e9', 'utf8'), '.pdf"'),
      'a UTF-8 filename arrives intact',
    );
    assert.ok('x-latin1' in got, 'a Latin-1 value is not dropped');
    assert.deepEqual(Buffer.from(got['x-latin1'], 'latin1'), Buffer.from('r\xe9sum\xe9.pdf', 'latin1'), 'the 0xE9 bytes arrive as sent');
  });

  test('two Set-Cookie fields from the origin reach the caller as two', async () => {
    origin.respond((req, res) => {
      res.writeHead(200, [['content-type', 'text/plain'], ['set-cookie', 'a=1; Path=/'], ['set-cookie', 'b=2; Path=/; HttpOnly']].flat());
      res.end('ok');
    });
    const res = await gw.raw('/account/getprofile', { method: 'POST', headers: withJwt(jwt) });
    assert.equal(res.status, 200);
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/; HttpOnly']);
  });

  test('a non-ASCII request header reaches the origin byte for byte, UTF-8 and Latin-1', async () => {
    const res = await gw.raw('/account/getprofile', {
      method: 'POST',
      headers: withJwt(jwt, { 'x-utf8': Buffer.from('na\u00efve r\u00e9sum\u00e9', 'utf8').toString('latin1'), 'x-latin1': 'r\u00e9sum\u00e9.pdf' }),
    });
    assert.equal(res.status, 200, res.body.toString());
    const got = Object.fromEntries(pairs(origin.last().rawHeaders));
    assert.deepEqual(Buffer.from(got['x-utf8'] ?? '', 'latin1'), Buffer.from('na\u00efve r\u00e9sum\u00e9', 'utf8'));
    assert.ok('x-latin1' in got, 'a Latin-1 value is not dropped');
    assert.deepEqual(Buffer.from(got['x-latin1'], 'latin1'), Buffer.from('r\xe9sum\xe9.pdf', 'latin1'), 'the 0xE9 bytes arrive as sent');
  });
});

test('an API_KEY with a non-breaking space is a 500 naming API_KEY, and nothing is sent', async (t) => {
  const secret = `${API_KEY}\u00a0`;
  const stack = await startStack({ bindings: { API_KEY: secret } });
  t.after(() => stack.close());
  const res = await read(await stack.gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(stack.jwt) }));
  assert.equal(res.status, 500);
  assert.equal(res.headers.get('content-type'), 'application/problem+json');
  assert.match(res.json.detail, /API_KEY/);
  assert.ok(!res.text.includes(API_KEY), res.text);
  assert.ok(!stack.gw.output().includes(API_KEY), 'nor in the logs');
  assert.equal(stack.origin.count, 0);
  assert.equal(stack.token.count, 0);
});

test('a key rotation that shortens max-age is picked up after one refetch', async (t) => {
  const [origin, token, a, b] = await Promise.all([
    startOrigin(),
    startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    makeKey('RS256', 'key-a'),
    makeKey('RS256', 'key-b'),
  ]);
  const keyServer = await startJwksServer(jwks(a), { cacheControl: 'max-age=3600' });
  const bindings = baseBindings({ origin, token, key: a, JWKS_URL: keyServer.url });
  delete bindings.JWT_JWKS;
  const gw = (await startStack({ servers: false, bindings })).gw;
  t.after(async () => {
    await gw.dispose();
    await Promise.all([origin.close(), token.close(), keyServer.close()]);
  });
  const call = async (jwt) => read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt) }));

  assert.equal((await call(await signJwt(a))).status, 200);
  assert.equal(keyServer.count, 1);
  // The provider rotates to B and asks for a minute's freshness instead of an hour's.
  keyServer.setKeys(jwks(b));
  keyServer.setCacheControl('max-age=60');
  const res = await call(await signJwt(b));
  assert.equal(res.status, 200, `${res.text} (JWKS fetched ${keyServer.count} times)`);
  assert.equal(keyServer.count, 2, 'exactly one refetch');
  // The new set replaced the held one: A's tokens stop working.
  assert.equal((await call(await signJwt(a, { claims: { sub: 'another' } }))).status, 401);
  assert.equal(origin.count, 2);
});

// Issue 17, "no ambiguity about who is calling": Connection never removes a field the gateway
// sets, and identity headers (any route's claims_to_headers, the customer id) belong to the
// gateway on every route.
describe('who is calling: Connection and identity headers', () => {
  const CUSTOMER_ID_KEY = Buffer.alloc(32, 7).toString('base64');
  const IDENTITY_ROUTES = JSON.stringify([
    { prefix: '/auth/', auth: 'public', cors_preflight: 'forward' },
    { prefix: '/account/', auth: 'jwt', cors_preflight: 'forward', claims_to_headers: { 'x-user-email': 'email' } },
    { prefix: '/other/', auth: 'jwt' },
  ]);
  let stack, origin, gw, jwt;

  before(async () => {
    stack = await startStack({ bindings: { ROUTES: IDENTITY_ROUTES, CUSTOMER_ID_HEADER: 'X-Customer-Id', CUSTOMER_ID_KEY } });
    ({ origin, gw } = stack);
    jwt = await signJwt(stack.key, { claims: { email: 'alice@example.com' } });
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  const listings = (name) => {
    const title = name.replace(/(^|-)([a-z])/g, (_, d, c) => d + c.toUpperCase());
    return [
      name,
      name.toUpperCase(),
      title,
      `keep-alive, ${title}`,
      `close,${name}`,
      ` x-a , ${name} ,, x-b`,
      ['keep-alive', title],
      [name, 'close'],
      name.replaceAll('-', '_'),
    ];
  };

  test('Connection can never remove a field the gateway sets (customer-auth kept as sent included)', async () => {
    const fields = ['customer-auth', 'authorization', 'api-key', 'x-request-id', 'x-customer-id', 'x-user-email'];
    let n = 0;
    for (const field of [...fields, fields.join(', ')]) {
      for (const connection of listings(field)) {
        for (const source of [withJwt(jwt), { authorization: `Bearer ${jwt}` }]) {
          const id = `conn-${n++}`;
          const res = await gw.raw('/account/x', { headers: { ...source, connection, 'x-request-id': id } });
          const at = `Connection ${JSON.stringify(connection)} with ${Object.keys(source)[0]}`;
          assert.equal(res.status, 200, `${at}: ${res.body}`);
          const seen = origin.last();
          const got = pairs(seen.rawHeaders);
          const count = (name) => got.filter(([k]) => k === name).length;
          assert.equal(seen.headers['customer-auth'], `JWT ${jwt}`, `${at}: customer-auth`);
          assert.equal(count('customer-auth'), 1, at);
          assert.match(seen.headers.authorization ?? '', /^Bearer /, `${at}: authorization`);
          assert.equal(count('authorization'), 1, at);
          assert.equal(seen.headers['api-key'], API_KEY, `${at}: api-key`);
          assert.equal(seen.headers['x-request-id'], id, `${at}: x-request-id`);
          assert.equal(count('x-customer-id'), 1, `${at}: the customer id`);
          assert.equal(seen.headers['x-user-email'], 'alice@example.com', `${at}: the claim header`);
        }
      }
    }
    assert.equal(origin.count, n);
  });

  test("the origin's Connection never removes the request id on the way back", async () => {
    for (const connection of ['x-request-id', 'X-Request-Id, x-origin-hop', 'close, X-REQUEST-ID']) {
      origin.respond((req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', connection, 'x-request-id': 'origin-chosen', 'x-origin-hop': '1' });
        res.end('ok');
      });
      const res = await gw.raw('/auth/login', { headers: { 'x-request-id': 'rid-back-1' } });
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-request-id'], 'rid-back-1', connection);
      if (/x-origin-hop/i.test(connection)) assert.equal(res.headers['x-origin-hop'], undefined, connection);
    }
  });

  const FORGED_IDENTITY = {
    'x-user-email': 'victim@example.com',
    x_user_email: 'victim2@example.com',
    'X_User-Email': 'victim3@example.com',
    'x-customer-id': 'forged-customer',
    X_CUSTOMER_ID: 'forged-customer-2',
  };

  test('identity headers any route maps are removed on every route, preflights included', async () => {
    const cases = [
      ['public route', '/auth/login', {}],
      ['jwt route without claims_to_headers', '/other/x', withJwt(jwt)],
      ['jwt route with its own', '/account/x', withJwt(jwt)],
      ['forwarded preflight, public route', '/auth/login', { origin: 'https://app.example', 'access-control-request-method': 'POST' }, 'OPTIONS'],
      ['forwarded preflight, jwt route', '/account/x', { origin: 'https://app.example', 'access-control-request-method': 'POST' }, 'OPTIONS'],
    ];
    for (const [what, path, headers, method = 'GET'] of cases) {
      const before = origin.count;
      const res = await gw.raw(path, { method, headers: { ...headers, ...FORGED_IDENTITY } });
      assert.equal(res.status, 200, `${what}: ${res.body}`);
      assert.equal(origin.count, before + 1, what);
      const forged = new Set(Object.values(FORGED_IDENTITY));
      for (const [name, value] of pairs(origin.last().rawHeaders)) {
        assert.ok(!forged.has(value), `${what}: the caller's ${name}: ${value} reached the origin`);
      }
    }
    assert.equal(origin.last().headers['x-user-email'], undefined, 'a preflight carries no claim header');
  });
});
