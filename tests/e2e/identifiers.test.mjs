// One identifier per request, against the built Worker: on `jwt`, `optional`, `report` and
// `opaque` routes, two different identifiers in any two of customer-auth, Authorization, the
// JWT_COOKIE cookie and the SESSION_COOKIE cookie are 400 invalid_request, and so is either
// cookie sent twice in any spelling an origin folds to one name (case, percent-escapes), on one
// Cookie line or several. A refusal costs no introspection call, no token and no origin
// request (the loopback servers count them), and its log line names the places, never the
// identifiers. The same identifier in several places is one.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, ISSUER, read, startStack } from './harness.mjs';
import { startIntrospection } from './introspection.mjs';
import { signJwt } from './servers.mjs';

const ROUTES = [
  { prefix: '/public', auth: 'public' },
  { prefix: '/maybe', auth: 'optional' },
  { prefix: '/report', auth: 'report' },
  { prefix: '/session', auth: 'opaque' },
  { prefix: '/account', auth: 'jwt' },
];

async function stack() {
  const idp = await startIntrospection({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, issuer: ISSUER });
  let s;
  try {
    s = await startStack({
      bindings: { ROUTES: JSON.stringify(ROUTES), INTROSPECTION_URL: idp.url, SESSION_COOKIE: 'sid', JWT_COOKIE: 'jwt' },
    });
  } catch (err) {
    await idp.close();
    throw err;
  }
  return {
    ...s,
    idp,
    /** Calls so far: token endpoint, introspection endpoint, origin. */
    calls: () => ({ token: s.token.count, introspection: idp.count, origin: s.origin.count }),
    async close() {
      await s.close();
      await idp.close();
    },
  };
}

const get = (gw, path, headers = {}) => gw.fetch(path, { headers }).then(read);

/** Over node:http with `fields` as [name, value] pairs sent as they are, one line each. */
async function raw(gw, path, fields) {
  const flat = ['Host', 'gateway.test', ...fields.flat()];
  const res = await gw.raw(path, { headers: flat });
  const text = res.body.toString('utf8');
  return { status: res.status, headers: new Headers(res.headers), text, json: JSON.parse(text) };
}

function assertRefused(res, what) {
  assert.equal(res.status, 400, `${what}: ${res.text}`);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
  assert.equal(res.json.type, 'urn:edge-auth-proxy:problem:invalid-request', what);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="edge-auth-proxy", error="invalid_request"/, what);
}

const SOURCES = {
  'customer-auth': (id, opaque) => ['customer-auth', opaque ? `Session ${id}` : `JWT ${id}`],
  authorization: (id) => ['authorization', `Bearer ${id}`],
  jwt_cookie: (id) => ['cookie', `jwt=${id}`],
  session_cookie: (id) => ['cookie', `sid=${id}`],
};
const PAIRS = Object.keys(SOURCES).flatMap((a, i) => Object.keys(SOURCES).slice(i + 1).map((b) => [a, b]));

/** Fields for fetch: two Cookie fields become one line, joined as a browser joins them. */
function fetchHeaders(fields) {
  const h = {};
  for (const [k, v] of fields) h[k] = h[k] ? `${h[k]}; ${v}` : v;
  return h;
}

describe('one identifier per request', () => {
  test("the issue's reproductions are 400, with no introspection, no token and no origin request", async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp, key } = s;
    const sid = idp.login('alice');
    const revoked = idp.login('alice');
    idp.sessions.delete(revoked);
    const other = await signJwt(key, { claims: { sub: 'mallory' } });
    const cases = [
      ['/session/x', { 'customer-auth': `Session ${sid}`, cookie: 'sid=one; sid=two' }, 'duplicate_session_cookie', ['session_cookie', 'session_cookie']],
      ['/session/x', { 'customer-auth': `Session ${sid}`, cookie: `sid=${revoked}` }, 'two_identifiers', ['customer-auth', 'session_cookie']],
      ['/account/x', { 'customer-auth': `JWT ${s.jwt}`, cookie: `jwt=${other}` }, 'two_identifiers', ['customer-auth', 'jwt_cookie']],
      ['/session/x', { cookie: `sid=${sid}; SID=${revoked}` }, 'duplicate_session_cookie', ['session_cookie', 'session_cookie']],
      ['/session/x', { cookie: `sid=${sid}; s%69d=${revoked}` }, 'duplicate_session_cookie', ['session_cookie', 'session_cookie']],
    ];
    for (const [i, [path, headers, outcome]] of cases.entries()) {
      assertRefused(await get(gw, path, { ...headers, 'x-request-id': `repro-${i}` }), `${path} ${outcome}`);
    }
    assert.deepEqual(s.calls(), { token: 0, introspection: 0, origin: 0 });

    const lines = await gw.waitForRequestLogs(cases.length);
    for (const [i, [, , outcome, conflict]] of cases.entries()) {
      const line = lines.find((l) => l.request_id === `repro-${i}`);
      assert.equal(line.outcome, outcome);
      assert.deepEqual(line.identifier_conflict, conflict);
      assert.equal(line.status, 400);
    }
    const output = gw.output();
    for (const id of [sid, revoked, s.jwt, other]) assert.ok(!output.includes(id), 'an identifier reached the console');
  });

  test('every pair of sources on every reading route: two identifiers 400 at no cost, the same one forwarded', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp, key } = s;
    const kinds = [
      ['/account/p', false, [s.jwt, await signJwt(key, { claims: { sub: 'bob' } })]],
      ['/maybe/p', false, [s.jwt, await signJwt(key, { claims: { sub: 'carol' } })]],
      ['/report/p', false, [s.jwt, await signJwt(key, { claims: { sub: 'dave' } })]],
      ['/session/p', true, [idp.login('erin'), idp.login('frank')]],
    ];
    let n = 0;
    for (const [path, opaque, [one, two]] of kinds) {
      for (const [a, b] of PAIRS) {
        for (const [x, y] of [[one, two], [two, one]]) {
          const fields = [SOURCES[a](x, opaque), SOURCES[b](y, opaque)];
          const what = `${path} ${a} + ${b}`;
          assertRefused(await get(gw, path, { ...fetchHeaders(fields), 'x-request-id': `pair-${n++}` }), what);
        }
      }
    }
    assert.deepEqual(s.calls(), { token: 0, introspection: 0, origin: 0 }, 'a 400 costs nothing');
    const lines = await gw.waitForRequestLogs(n);
    assert.equal(lines.filter((l) => l.outcome === 'two_identifiers' && l.identifier_conflict?.length === 2).length, n);

    for (const [path, opaque, [one]] of kinds) {
      for (const pair of [...PAIRS, Object.keys(SOURCES)]) {
        const fields = pair.map((src) => SOURCES[src](one, opaque));
        const res = await get(gw, path, fetchHeaders(fields));
        assert.equal(res.status, 200, `${path} ${pair}: ${res.text}`);
      }
    }
    assert.equal(s.origin.count, kinds.length * (PAIRS.length + 1));
    assert.equal(idp.callsFor(kinds[3][2][0]), 1, 'the session, checked once');
  });

  test('an identifier cookie sent twice, in any spelling, on one Cookie line or several, is 400', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const { gw, idp } = s;
    const sid = idp.login('alice');
    const spellings = (name, id) => {
      const upper = name.toUpperCase();
      const escaped = [...name].map((c) => `%${c.charCodeAt(0).toString(16)}`).join('');
      return [
        [[`${name}=${id}; ${name}=${id}`]],
        [[`${name}=${id}; ${upper}=x`]],
        [[`${name}=${id}; ${name[0].toUpperCase()}${name.slice(1)}=x`]],
        [[`${name}=${id}; ${escaped}=x`]],
        [[`${name}=${id}; ${escaped.toUpperCase()}=x`]],
        [[`${name}=${id}; ${name[0]}%${name.charCodeAt(1).toString(16).toUpperCase()}${name.slice(2)}=x`]],
        [[`${name}=${id}; ${name}=`]],
        [[`${name}=${id}; ${name}=""`]],
        [[`${name}=${id}; +${name}=x`]],
        [[`${name}=${id}; %20${name}=x`]],
        [[`a%zz=1; ${name}=${id}; b%=2; %=3; ${upper}=x`]],
        [[`${name}=${id}, ${upper}=x`]],
        // Several Cookie lines: the runtime joins them with ", ".
        [[`${name}=${id}`], [`theme=dark; ${upper}=x`]],
        [[`${name}=${id}`], ['lang=en'], [`${escaped}=`]],
        // Latin-1 bytes in another cookie hide nothing.
        [[`${name}=${id}`], [`z=\xe9\xff; ${upper}=x`]],
      ];
    };
    const routes = [
      ['/session/x', 'sid', sid, [['customer-auth', `Session ${sid}`]], 'duplicate_session_cookie'],
      ['/session/x', 'sid', sid, [], 'duplicate_session_cookie'],
      ['/account/x', 'jwt', s.jwt, [['customer-auth', `JWT ${s.jwt}`]], 'duplicate_jwt_cookie'],
      ['/account/x', 'jwt', s.jwt, [], 'duplicate_jwt_cookie'],
      ['/account/x', 'sid', s.jwt, [['authorization', `Bearer ${s.jwt}`]], 'duplicate_session_cookie'],
      ['/report/x', 'jwt', s.jwt, [], 'duplicate_jwt_cookie'],
      ['/maybe/x', 'sid', 'anything', [], 'duplicate_session_cookie'],
    ];
    let n = 0;
    for (const [path, name, id, holder, outcome] of routes) {
      for (const lines of spellings(name, id)) {
        const fields = [...holder, ...lines.map(([l]) => ['cookie', l]), ['x-request-id', `twice-${n++}`]];
        const res = await raw(gw, path, fields);
        assertRefused(res, `${path} ${JSON.stringify(lines)}`);
        assert.match(res.json.detail, /sent more than once/);
      }
    }
    assert.deepEqual(s.calls(), { token: 0, introspection: 0, origin: 0 });
    const lines = await gw.waitForRequestLogs(n);
    assert.equal(lines.filter((l) => /^duplicate_(jwt|session)_cookie$/.test(l.outcome)).length, n);

    // Look-alike names are other cookies: forwarded.
    for (const cookie of ['sid_=x; xsid=y; sidx=z; jwt_=x', 's%zzid=x; sid%=y; s%69=z; s%2569d=w; %2Bsid=v', 'theme=a; theme=b']) {
      const res = await get(gw, '/session/x', { 'customer-auth': `Session ${sid}`, cookie });
      assert.equal(res.status, 200, `${cookie}: ${res.text}`);
    }
  });

  test('public routes read no identifier', async (t) => {
    const s = await stack();
    t.after(() => s.close());
    const res = await get(s.gw, '/public/x', { 'customer-auth': 'JWT a', authorization: 'Bearer b', cookie: 'sid=c; SID=d; jwt=e; jwt=f' });
    assert.equal(res.status, 200, res.text);
  });
});
