// Path confusion: the gateway in front of an origin that reads paths the way permissive real
// servers do (nginx decodes %2F, Tomcat reads `..;` as `..`, IIS reads `\` as `/`, most merge
// `//`). Every hostile path goes in without a JWT, through a raw request line (fetch would
// resolve dots and backslashes before the gateway sees them): none may reach the protected
// handler, with the contract's example ROUTES or with a catch-all public route.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { requestLog, startStack, withJwt } from './harness.mjs';
import { listen } from './servers.mjs';

const CONTRACT_ROUTES = [
  { prefix: '/auth/customer_authenticate', auth: 'public', methods: ['POST'] },
  { prefix: '/account/', auth: 'jwt', methods: ['POST', 'GET'] },
];
const CATCH_ALL_ROUTES = [
  { prefix: '/account/', auth: 'jwt' },
  { prefix: '/', auth: 'public' },
];

/** Bytes of `s` with every %XX decoded once. */
function decodeOnce(s) {
  const out = [];
  const b = Buffer.from(s, 'latin1');
  for (let i = 0; i < b.length; i++) {
    const hex = b.toString('latin1', i + 1, i + 3);
    if (b[i] === 0x25 && /^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(parseInt(hex, 16));
      i += 2;
    } else {
      out.push(b[i]);
    }
  }
  return Buffer.from(out).toString('latin1');
}

/**
 * How a permissive server reads a path: decoded until nothing changes (double decoding
 * included), `\` as `/`, `;params` stripped from every segment, `//` merged, dot segments
 * resolved.
 */
function permissiveRead(rawPath) {
  let p = rawPath;
  for (let i = 0; i < 4; i++) {
    const next = decodeOnce(p);
    if (next === p) break;
    p = next;
  }
  const kept = [];
  let trailing = false;
  const segments = p.replaceAll('\\', '/').split('/');
  segments.forEach((raw, i) => {
    const seg = raw.split(';')[0];
    const last = i === segments.length - 1;
    if (seg === '' || seg === '.') trailing = last;
    else if (seg === '..') {
      kept.pop();
      trailing = last;
    } else {
      kept.push(seg);
      trailing = false;
    }
  });
  return `/${kept.join('/')}${trailing && kept.length ? '/' : ''}`;
}

/** The permissive origin: records the raw target, what it served, and which handler. */
async function startPermissiveOrigin() {
  const served = [];
  const s = await listen(async (req, res) => {
    for await (const _ of req);
    const rawPath = req.url.split('?')[0];
    const path = permissiveRead(rawPath);
    const handler = path === '/account' || path.startsWith('/account/') ? 'protected' : 'public';
    const rec = { raw: req.url, rawPath, path, handler, customerAuth: 'customer-auth' in req.headers };
    served.push(rec);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ handler, path }));
  });
  return {
    ...s,
    served,
    reset() {
      served.length = 0;
    },
  };
}

// The issue's examples, verbatim, then the rest of an attacker's checklist. Sent as POST (the
// public login route's only method).
const ISSUE_EXAMPLES = [
  '/auth/customer_authenticate/..;/..;/account/getprofile',
  '/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile',
  '//account/getprofile',
  '/%61ccount/getprofile',
  '/account%2Fgetprofile',
];
const HOSTILE = [
  ...ISSUE_EXAMPLES,
  '/auth/customer_authenticate/..%2f..%2faccount%2fgetprofile',
  '/auth/customer_authenticate/%2e%2e/%2e%2e/account/getprofile',
  '/auth/customer_authenticate/%2E%2E/%2E%2E/account/getprofile',
  '/auth/customer_authenticate/.%2e/.%2e/account/getprofile',
  '/auth/customer_authenticate/../../account/getprofile',
  '/auth/customer_authenticate/..;x/..;y/account/getprofile',
  '/auth/customer_authenticate/%2e%2e;/%2e%2e;/account/getprofile',
  '/auth/customer_authenticate/..%3B/..%3B/account/getprofile',
  '/auth/customer_authenticate/.;/../../account/getprofile',
  '/auth/customer_authenticate/..%5C..%5Caccount%5Cgetprofile',
  '/auth/customer_authenticate/..%5c..%5caccount%5cgetprofile',
  '/auth/customer_authenticate/..\\..\\account\\getprofile',
  '/auth/customer_authenticate/%2e%2e%2f%2e%2e%2faccount%2fgetprofile',
  '/auth/customer_authenticate/..%252F..%252Faccount%252Fgetprofile',
  '/auth/customer_authenticate/%252e%252e/%252e%252e/account/getprofile',
  '/auth/customer_authenticate/%25%32%65%25%32%65/%25%32%65%25%32%65/account/getprofile',
  '/auth/customer_authenticate/%C0%AE%C0%AE/%C0%AE%C0%AE/account/getprofile',
  '/auth/customer_authenticate/..%00/..%00/account/getprofile',
  '/auth/customer_authenticate;x/../account/getprofile',
  '///account//getprofile',
  '/./account/getprofile',
  '/x/../account/getprofile',
  '/%2Faccount/getprofile',
  '/account%2fgetprofile',
  '/account%5Cgetprofile',
  '/account\\getprofile',
  '/account;x/getprofile',
  '/account;/getprofile',
  '/account%3Bx/getprofile',
  '/account%252Fgetprofile',
  '/%61ccount%2Fgetprofile',
  '/acc%6Funt/getprofile',
  '/.;/account/getprofile',
  '/x/..;/account/getprofile',
  '/account%0d%0aX-Injected:%201/getprofile',
];
// What the gateway itself must refuse (400) whatever the routes: these carry something an
// origin could read two ways. (`…/.;/../../account/…` is not among them: workerd resolves its
// plain `..` segments first, and what is left, `/auth/account/getprofile`, is unambiguous.)
const REFUSED = new Set([
  '/auth/customer_authenticate/..;/..;/account/getprofile',
  '/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile',
  '/account%2Fgetprofile',
  '/auth/customer_authenticate/..%2f..%2faccount%2fgetprofile',
  '/auth/customer_authenticate/..;x/..;y/account/getprofile',
  '/auth/customer_authenticate/%2e%2e;/%2e%2e;/account/getprofile',
  '/auth/customer_authenticate/..%3B/..%3B/account/getprofile',
  '/auth/customer_authenticate/..%5C..%5Caccount%5Cgetprofile',
  '/auth/customer_authenticate/..%5c..%5caccount%5cgetprofile',
  '/auth/customer_authenticate/%2e%2e%2f%2e%2e%2faccount%2fgetprofile',
  '/auth/customer_authenticate/..%252F..%252Faccount%252Fgetprofile',
  '/auth/customer_authenticate/%252e%252e/%252e%252e/account/getprofile',
  '/auth/customer_authenticate/%25%32%65%25%32%65/%25%32%65%25%32%65/account/getprofile',
  '/auth/customer_authenticate/%C0%AE%C0%AE/%C0%AE%C0%AE/account/getprofile',
  '/auth/customer_authenticate/..%00/..%00/account/getprofile',
  '/%2Faccount/getprofile',
  '/account%2fgetprofile',
  '/account%5Cgetprofile',
  '/account;x/getprofile',
  '/account;/getprofile',
  '/account%3Bx/getprofile',
  '/account%252Fgetprofile',
  '/%61ccount%2Fgetprofile',
  '/.;/account/getprofile',
  '/x/..;/account/getprofile',
  '/account%0d%0aX-Injected:%201/getprofile',
]);
// What normalizes to the protected route: 401 without a JWT, never the public route.
const NORMALIZES_TO_ACCOUNT = [
  '//account/getprofile',
  '/%61ccount/getprofile',
  '/auth/customer_authenticate/%2e%2e/%2e%2e/account/getprofile',
  '/auth/customer_authenticate/%2E%2E/%2E%2E/account/getprofile',
  '/auth/customer_authenticate/.%2e/.%2e/account/getprofile',
  '/auth/customer_authenticate/../../account/getprofile',
  '///account//getprofile',
  '/./account/getprofile',
  '/x/../account/getprofile',
  '/acc%6Funt/getprofile',
];

for (const [name, routes] of [
  ['the contract example ROUTES', CONTRACT_ROUTES],
  ['a catch-all public route after the jwt one', CATCH_ALL_ROUTES],
]) {
  describe(`paths, with ${name}`, () => {
    let stack, origin;

    before(async () => {
      origin = await startPermissiveOrigin();
      stack = await startStack({ bindings: { ORIGIN_URL: origin.url, ROUTES: JSON.stringify(routes) } });
    });
    after(async () => {
      await stack?.close();
      await origin?.close();
    });
    beforeEach(() => origin.reset());

    test('no hostile path reaches the protected handler without a JWT', async () => {
      const answers = [];
      for (const p of HOSTILE) {
        const before = origin.served.length;
        const res = await stack.gw.raw(p, { method: 'POST' });
        const reached = origin.served.slice(before);
        answers.push({ p, status: res.status, reached });
        for (const rec of reached) {
          assert.notEqual(rec.handler, 'protected', `${p} was served as ${rec.path} without a JWT`);
          // What the origin serves is what the gateway forwarded, decoded: nothing left that
          // it could read another way.
          assert.equal(rec.path, decodeOnce(rec.rawPath), `${p}: forwarded ${rec.raw}, served ${rec.path}`);
        }
        if (REFUSED.has(p)) {
          assert.equal(res.status, 400, `${p}: ${res.body}`);
          assert.match(res.headers['content-type'] ?? '', /^application\/problem\+json/);
          const problem = JSON.parse(res.body.toString());
          assert.equal(problem.type, 'urn:edge-auth-proxy:problem:invalid-request');
          assert.equal(problem.status, 400);
          assert.match(problem.detail, /^The request path contains /);
          assert.equal(reached.length, 0, `${p} was refused and still forwarded`);
        }
        if (NORMALIZES_TO_ACCOUNT.includes(p)) {
          assert.equal(res.status, 401, `${p}: ${res.body}`);
          assert.equal(reached.length, 0);
        }
      }
      assert.equal(origin.served.filter((r) => r.handler === 'protected').length, 0);
      // Every answer is a refusal, a missing JWT, no route, a wrong method, or a public page.
      for (const { p, status, reached } of answers) {
        assert.ok([400, 401, 404, 405].includes(status) || (status === 200 && reached.length === 1), `${p}: ${status}`);
      }
    });

    test('refused paths cost no access token and are logged as invalid_path with the class', async () => {
      const calls = stack.token.count;
      const res = await stack.gw.raw('/auth/customer_authenticate/..%2F..%2Faccount%2Fgetprofile', {
        method: 'POST',
        headers: { 'x-request-id': `paths-log-${routes.length}` },
      });
      assert.equal(res.status, 400);
      assert.equal(stack.token.count, calls, 'the token endpoint was called for a refused path');
      const line = await requestLog(stack.gw, `paths-log-${routes.length}`);
      assert.equal(line?.outcome, 'invalid_path');
      assert.equal(line?.path_problem, 'encoded_slash');
      assert.equal(line?.status, 400);
    });

    test('benign spellings with a JWT reach /account/getprofile exactly', async () => {
      // workerd itself reads a raw `\` as `/` (WHATWG parsing), as a permissive origin does.
      const benign = ['/%61ccount/getprofile', '//account//getprofile', '/account/./getprofile', '/x/../account/getprofile', '/account\\getprofile'];
      for (const p of benign) {
        const before = origin.served.length;
        const res = await stack.gw.raw(`${p}?q=%2F..`, { method: 'POST', headers: withJwt(stack.jwt) });
        assert.equal(res.status, 200, `${p}: ${res.body}`);
        const reached = origin.served.slice(before);
        assert.equal(reached.length, 1);
        assert.equal(reached[0].raw, '/account/getprofile?q=%2F..', `${p}: the origin got ${reached[0].raw}`);
        assert.equal(reached[0].handler, 'protected');
        assert.equal(reached[0].customerAuth, true);
      }
    });
  });
}
