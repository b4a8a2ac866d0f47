// A good request, as the origin sees it and as the caller gets the answer back; and where the
// customer JWT is read from.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';

import { API_KEY, read, startStack, withJwt } from './harness.mjs';
import { bigBodyPattern } from './servers.mjs';

describe('a good request', () => {
  let stack, origin, token, gw, jwt;

  before(async () => {
    stack = await startStack();
    ({ origin, token, gw, jwt } = stack);
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  test('the origin gets the access token, the caller JWT byte for byte and the api-key', async () => {
    const res = await read(
      await gw.fetch('/account/getprofile', {
        method: 'POST',
        headers: withJwt(jwt, { 'content-type': 'application/json', 'x-request-id': 'req-abc-123' }),
        body: '{"fields":["name"]}',
      }),
    );
    assert.equal(res.status, 200, res.text);
    assert.equal(origin.count, 1);
    const seen = origin.last();
    assert.equal(token.count, 1, 'one token-endpoint call');
    assert.equal(seen.headers.authorization, `Bearer ${token.issued[0]}`);
    assert.equal(seen.headers['customer-auth'], `JWT ${jwt}`);
    assert.equal(seen.headers['api-key'], API_KEY);
    assert.equal(seen.headers['x-request-id'], 'req-abc-123', 'a sent x-request-id is passed on');
    assert.equal(res.headers.get('x-request-id'), 'req-abc-123', 'and returned');
    assert.equal(seen.method, 'POST');
    assert.equal(seen.url, '/account/getprofile');
    assert.equal(seen.body.toString(), '{"fields":["name"]}');
    assert.equal(seen.headers['content-type'], 'application/json');
  });

  test('an x-request-id is made when none is sent, and is the same on both sides', async () => {
    const res = await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt) });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    const id = res.headers.get('x-request-id');
    assert.ok(id && id.length >= 8, `x-request-id on the response: ${id}`);
    assert.equal(origin.last().headers['x-request-id'], id);
  });

  test('path and query are kept, and the origin host never comes from the request', async () => {
    const res = await gw.fetch('/account/getprofile/v2?fields=name%2Cemail&x=1&x=2&empty=', {
      headers: withJwt(jwt, { host: 'evil.example' }),
    });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(origin.last().url, '/account/getprofile/v2?fields=name%2Cemail&x=1&x=2&empty=');
    assert.equal(origin.last().headers.host, `127.0.0.1:${origin.port}`);
  });

  test('methods arrive as sent', async () => {
    for (const method of ['GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const res = await gw.fetch('/things/1', { method, headers: withJwt(jwt) });
      await res.arrayBuffer();
      assert.equal(res.status, 200, method);
      assert.equal(origin.last().method, method);
    }
  });

  test('a ~1 MB POST body arrives byte for byte', async () => {
    const body = randomBytes(1024 * 1024 + 17);
    const res = await read(
      await gw.fetch('/upload', { method: 'POST', headers: withJwt(jwt, { 'content-type': 'application/octet-stream' }), body }),
    );
    assert.equal(res.status, 200, res.text);
    const seen = origin.last();
    assert.equal(seen.body.length, body.length);
    assert.ok(seen.body.equals(body), 'the body the origin received differs from the one sent');
  });

  test("the caller's own api-key, Authorization and customer-auth duplicates never reach the origin", async () => {
    const res = await gw.fetch('/account/getprofile', {
      method: 'POST',
      // Not a Bearer token: one beside customer-auth would be a second identifier (400).
      headers: withJwt(jwt, { 'api-key': 'caller-chosen-key', authorization: 'Basic caller-chosen-credentials' }),
    });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    const seen = origin.last();
    assert.equal(seen.headers['api-key'], API_KEY);
    assert.equal(seen.headers.authorization, `Bearer ${token.issued[0]}`);
    assert.ok(!JSON.stringify(seen.rawHeaders).includes('caller-chosen'), `caller values leaked: ${JSON.stringify(seen.rawHeaders)}`);
  });

  test('hop-by-hop headers (and fields named by Connection) never reach the origin', async () => {
    const res = await gw.raw('/account/getprofile', {
      method: 'POST',
      headers: {
        ...withJwt(jwt),
        Connection: 'close, x-secret',
        'x-secret': '1',
        'Keep-Alive': 'timeout=5',
        TE: 'trailers',
        Upgrade: 'websocket-ish',
        'Proxy-Authorization': 'Basic cHJveHk6cHc=',
        'Proxy-Connection': 'keep-alive',
        'x-end-to-end': 'kept',
        'content-type': 'text/plain',
      },
      body: 'hello',
    });
    assert.equal(res.status, 200, res.body.toString());
    const seen = origin.last();
    for (const name of ['x-secret', 'keep-alive', 'te', 'upgrade', 'proxy-authorization', 'proxy-connection']) {
      assert.equal(seen.headers[name], undefined, `${name} reached the origin: ${seen.headers[name]}`);
    }
    assert.doesNotMatch(seen.headers.connection ?? '', /x-secret/i);
    assert.equal(seen.headers['x-end-to-end'], 'kept', 'end-to-end headers are passed on');
    assert.equal(seen.body.toString(), 'hello');
  });

  test("the origin's status, body and end-to-end headers come back; hop-by-hop ones do not", async () => {
    origin.respond((req, res) => {
      res.writeHead(418, {
        'content-type': 'application/vnd.test+json',
        'x-origin-detail': 'teapot',
        'set-cookie': 'a=1; Path=/',
        'keep-alive': 'timeout=9',
        'proxy-connection': 'keep-alive',
        'x-origin-hop': 'hop',
        connection: 'x-origin-hop',
      });
      res.end('{"short":"and stout"}');
    });
    const res = await gw.raw('/account/getprofile', { method: 'POST', headers: withJwt(jwt) });
    assert.equal(res.status, 418);
    assert.equal(res.body.toString(), '{"short":"and stout"}');
    assert.equal(res.headers['content-type'], 'application/vnd.test+json');
    assert.equal(res.headers['x-origin-detail'], 'teapot');
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/']);
    assert.equal(res.headers['keep-alive'], undefined, 'keep-alive came back');
    assert.equal(res.headers['proxy-connection'], undefined, 'proxy-connection came back');
    assert.equal(res.headers['x-origin-hop'], undefined, 'a field listed in the origin Connection came back');
  });

  test('a large streamed origin body comes back intact', async () => {
    const size = 3 * 1024 * 1024 + 5;
    origin.bigBody(size);
    const res = await gw.fetch('/download', { headers: withJwt(jwt) });
    const buf = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200);
    assert.equal(buf.length, size);
    assert.ok(buf.equals(bigBodyPattern(size)), 'body differs');
  });

  test('the origin answering 401 once: a fresh token is fetched and the request replayed once', async () => {
    const before = token.count;
    origin.unauthorized(1);
    const res = await read(
      await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt, { 'content-type': 'application/json' }), body: '{"a":1}' }),
    );
    assert.equal(res.status, 200, `caller got ${res.status} ${res.text}`);
    assert.equal(token.count, before + 1, 'one new token-endpoint call');
    assert.equal(origin.count, 2, 'the request was replayed once');
    const [first, second] = origin.requests;
    assert.notEqual(first.headers.authorization, second.headers.authorization);
    assert.equal(second.headers.authorization, `Bearer ${token.token}`);
    assert.equal(second.body.toString(), '{"a":1}');
  });

  test('an origin that keeps refusing the token is not retried more than once: 502', async () => {
    origin.unauthorized(10);
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt) }));
    assert.equal(res.status, 502, res.text);
    assert.equal(res.headers.get('www-authenticate'), null);
    assert.ok(origin.count <= 2, `origin called ${origin.count} times`);
  });
});

describe('where the customer JWT is read', () => {
  let stack, origin, token, gw, jwt;
  const COOKIE = 'cust_session';

  before(async () => {
    stack = await startStack({ bindings: { JWT_COOKIE: COOKIE } });
    ({ origin, token, gw, jwt } = stack);
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  test('customer-auth: JWT (scheme in any case)', async () => {
    for (const scheme of ['JWT', 'jwt', 'Jwt']) {
      const res = await gw.fetch('/account/getprofile', { method: 'POST', headers: { 'customer-auth': `${scheme} ${jwt}` } });
      await res.arrayBuffer();
      assert.equal(res.status, 200, scheme);
      assert.equal(origin.last().headers['customer-auth'], `JWT ${jwt}`);
    }
  });

  test("Authorization: Bearer, and the origin then gets the gateway's Bearer, not the caller's", async () => {
    const res = await gw.fetch('/account/getprofile', { method: 'POST', headers: { authorization: `Bearer ${jwt}` } });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    const seen = origin.last();
    assert.equal(seen.headers['customer-auth'], `JWT ${jwt}`);
    assert.equal(seen.headers.authorization, `Bearer ${token.token}`);
    assert.notEqual(seen.headers.authorization, `Bearer ${jwt}`);
  });

  test('the cookie named by JWT_COOKIE', async () => {
    const res = await gw.fetch('/account/getprofile', {
      method: 'POST',
      headers: { cookie: `theme=dark; ${COOKIE}=${jwt}; other=1` },
    });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(origin.last().headers['customer-auth'], `JWT ${jwt}`);
  });

  test('a cookie of another name is not a JWT source', async () => {
    const res = await gw.fetch('/account/getprofile', { method: 'POST', headers: { cookie: `session=${jwt}` } });
    await res.arrayBuffer();
    assert.equal(res.status, 401);
    assert.equal(origin.count, 0);
  });

  test('customer-auth, Authorization and the cookie may all carry the same token', async () => {
    const res = await gw.fetch('/account/getprofile', {
      method: 'POST',
      headers: { 'customer-auth': `JWT ${jwt}`, authorization: `bearer ${jwt}`, cookie: `${COOKIE}="${jwt}"` },
    });
    await res.arrayBuffer();
    assert.equal(res.status, 200);
    assert.equal(origin.last().headers['customer-auth'], `JWT ${jwt}`);
  });

  test('another value beside the token is a second identifier: 400, never passed over', async () => {
    for (const headers of [
      { 'customer-auth': `JWT ${jwt}`, authorization: 'Bearer not-a-jwt' },
      { 'customer-auth': `JWT ${jwt}`, cookie: `${COOKIE}=also-not-a-jwt` },
      { authorization: `Bearer ${jwt}`, cookie: `${COOKIE}=not-a-jwt` },
    ]) {
      const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers }));
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.type, 'urn:edge-auth-proxy:problem:invalid-request');
    }
    assert.equal(origin.count, 0);
  });
});
