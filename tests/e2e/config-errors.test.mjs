// Configuration that cannot be wrong in silence, tried as a new user (and an attacker reading
// the answers) would: every setting misspelled under each prefix the gateway owns, plaintext
// endpoints on public hosts, ROUTES and JWT_PROVIDERS mistakes, bindings of the wrong kind or
// missing. Each is a 500 whose detail names every problem at once (never a value), with one
// config_error log line, and nothing reaches the origin or the token endpoint.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { API_KEY, CLIENT_SECRET, read, startStack, waitFor, withJwt } from './harness.mjs';

// Values planted in settings: none may appear in an answer or a log line.
const PLANTED = ['planted-value-Xq7', 'planted-secret-Kd2', 'Zp9-planted-route'];

function assertConfigProblem(res) {
  assert.equal(res.status, 500, res.text);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(res.json.type, 'urn:edge-auth-proxy:problem:configuration');
  assert.doesNotMatch(res.json.detail, /line \d+ column \d+/, 'a serde position reached the user');
}

function assertNoValues(s, res) {
  for (const value of [...PLANTED, CLIENT_SECRET, API_KEY]) {
    assert.ok(!res.text.includes(value), `${value} is in the answer`);
    assert.ok(!s.gw.output().includes(value), `${value} is in the logs`);
  }
}

/** The one config_error line (all problems in it). */
async function configErrorLine(s) {
  const lines = await waitFor(() => {
    const found = s.gw.jsonLogs().filter((l) => l.event === 'config_error');
    return found.length > 0 ? found : undefined;
  });
  assert.ok(lines, `no config_error line in:\n${s.gw.output()}`);
  assert.equal(lines.length, 1, 'one config_error line per isolate');
  return lines[0];
}

const post = (s, path = '/account/getprofile') =>
  s.gw.fetch(path, { method: 'POST', headers: withJwt(s.jwt), body: '{}' }).then(read);

describe('configuration errors', () => {
  test('JWT_AUDIENCES (a typo of JWT_AUDIENCE) is a 500 with the closest name, not an audience check switched off', async (t) => {
    const s = await startStack({ bindings: { JWT_AUDIENCE: '', JWT_AUDIENCES: 'profile-api' } });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    assert.match(res.json.detail, /JWT_AUDIENCES is an unknown setting; did you mean JWT_AUDIENCE\?/);
    assert.equal(s.origin.count, 0);
    assert.equal(s.token.count, 0);
  });

  test('an unknown name under every prefix the gateway owns, in any case, is named; every one at once', async (t) => {
    const unknown = {
      JWT_AUDIENCES: 'planted-value-Xq7',
      TOKEN_SCOPES: 'planted-value-Xq7',
      ORIGIN_TIMEOUT: '5000',
      INTROSPECTION_ULR: 'https://planted-value-Xq7.example/',
      CUSTOMER_ID_HEADRE: 'x-planted-value-Xq7',
      SESSION_COOKIES: 'sid',
      CLIENT_SECERT: 'planted-secret-Kd2',
      GATEWAY_ISSUER_URL: 'https://gw.example/',
      DPOP_ALGS: 'ES256',
      METRICS_DATASET: 'planted-value-Xq7',
      Jwt_Leeway_Seconds: '30',
    };
    // A name outside the gateway's prefixes is the operator's own: never flagged.
    const s = await startStack({ bindings: { ...unknown, MY_APP_FLAG: 'on' } });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    for (const name of Object.keys(unknown)) assert.match(res.json.detail, new RegExp(`\\b${name} is an unknown setting`), name);
    assert.match(res.json.detail, /TOKEN_SCOPES is an unknown setting; did you mean TOKEN_SCOPE\?/);
    assert.match(res.json.detail, /CLIENT_SECERT is an unknown setting; did you mean CLIENT_SECRET\?/);
    assert.match(res.json.detail, /Jwt_Leeway_Seconds is an unknown setting; did you mean JWT_LEEWAY_SECONDS\?/);
    assert.doesNotMatch(res.json.detail, /MY_APP_FLAG/);
    const line = await configErrorLine(s);
    for (const name of Object.keys(unknown)) assert.ok(line.settings.includes(name), `${name} not in the log line's settings`);
    assert.equal(line.problems.length, Object.keys(unknown).length);
    assertNoValues(s, res);
    assert.equal(s.origin.count, 0);
  });

  test('the token, key and introspection endpoints must be https on a public host; ALLOW_PLAINTEXT_ORIGIN does not change that', async (t) => {
    const s = await startStack({
      bindings: {
        TOKEN_URL: 'http://idp.example.com/oauth/token',
        JWKS_URL: 'http://login.example.com/jwks.json',
        INTROSPECTION_URL: 'http://127.0.0.1.nip.io/introspect',
        ALLOW_PLAINTEXT_ORIGIN: 'true',
      },
    });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    for (const name of ['TOKEN_URL', 'JWKS_URL', 'INTROSPECTION_URL']) {
      assert.match(res.json.detail, new RegExp(`setting ${name} must be an https URL`), name);
    }
    assert.equal(s.token.count, 0);
  });

  test('a plaintext origin on a public host is refused, in ORIGIN_URL and a route, unless ALLOW_PLAINTEXT_ORIGIN=true', async (t) => {
    const routes = JSON.stringify([
      { prefix: '/internal/', auth: 'jwt', origin: 'http://profile.internal.example' },
      { prefix: '/account/', auth: 'jwt' },
    ]);
    const refused = await startStack({ bindings: { ROUTES: routes, ORIGIN_URL: 'http://origin.example.com' } });
    t.after(() => refused.close());
    const res = await post(refused);
    assertConfigProblem(res);
    assert.match(res.json.detail, /setting ORIGIN_URL must be an https URL/);
    assert.match(res.json.detail, /ROUTES\[0\]\.origin: must be an https URL/);
    assert.match(res.json.detail, /ALLOW_PLAINTEXT_ORIGIN=true/);

    // Allowed: the route to the (loopback) test origin is served.
    const allowed = await startStack({ bindings: { ROUTES: routes, ALLOW_PLAINTEXT_ORIGIN: 'true' } });
    t.after(() => allowed.close());
    assert.equal((await post(allowed)).status, 200);

    for (const bad of ['yes', 'TRUE ', '1']) {
      const s = await startStack({ bindings: { ALLOW_PLAINTEXT_ORIGIN: bad } });
      t.after(() => s.close());
      const r = await post(s);
      assertConfigProblem(r);
      assert.match(r.json.detail, /setting ALLOW_PLAINTEXT_ORIGIN must be true or false/);
    }
  });

  test('ROUTES mistakes name the entry, the field and what was expected; several at once; no serde position', async (t) => {
    const routes = JSON.stringify([
      { prefix: '/account/', method: ['GET'] },
      { prefix: '/login', auth: 'JWT' },
      { prefix: '/x', auth: 'Zp9-planted-route' },
      { prefix: '/y', methods: 'GET', rate_limit: { binding: 'PER_IP', key: 'ip', limit: 5 } },
    ]);
    const s = await startStack({ bindings: { ROUTES: routes } });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    const d = res.json.detail;
    assert.match(d, /ROUTES\[0\]: unknown field "method"; did you mean "methods"\?/);
    assert.match(d, /ROUTES\[1\]\.auth: "JWT" is not one of jwt, public, optional, report, opaque/);
    // A value that is not a near miss of an allowed word is not repeated.
    assert.match(d, /ROUTES\[2\]\.auth: must be one of jwt, public, optional, report, opaque/);
    assert.match(d, /ROUTES\[3\]\.methods: must be an array of HTTP method names/);
    assert.match(d, /ROUTES\[3\]\.rate_limit: unknown field "limit"/);
    assertNoValues(s, res);
  });

  test('JWT_PROVIDERS mistakes name the entry and the field', async (t) => {
    const providers = JSON.stringify([
      { issuer: 'https://a.example/', jwks_url: 'https://a.example/jwks', audience: ['x'] },
      { issuer: 'https://b.example/', jwks_uri: 'https://b.example/jwks' },
      { issuer: 'https://c.example/', jwks_url: 'http://c.example/jwks' },
    ]);
    const s = await startStack({ bindings: { JWT_PROVIDERS: providers, JWT_ISSUER: '', JWT_AUDIENCE: '', JWT_JWKS: '' } });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    const d = res.json.detail;
    assert.match(d, /JWT_PROVIDERS\[0\]: unknown field "audience"; did you mean "audiences"\?/);
    assert.match(d, /JWT_PROVIDERS\[1\]: unknown field "jwks_uri"; did you mean "jwks_url"\?/);
    assert.match(d, /JWT_PROVIDERS\[2\]\.jwks_url: must be an https URL/);
  });

  test('a rate-limit binding named in ROUTES but not bound is found before any request is authenticated, and logged', async (t) => {
    const routes = JSON.stringify([
      { prefix: '/login', auth: 'public' },
      { prefix: '/account/', auth: 'jwt', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } },
    ]);
    const s = await startStack({ bindings: { ROUTES: routes } });
    t.after(() => s.close());
    // A public route without a limit, no JWT at all: the table is broken, so nothing is served.
    const res = await s.gw.fetch('/login', { method: 'POST', body: 'u=a' }).then(read);
    assertConfigProblem(res);
    assert.match(res.json.detail, /ROUTES\[1\]\.rate_limit\.binding: no rate-limiting binding named PER_CUSTOMER is bound/);
    const line = await configErrorLine(s);
    assert.ok(line.settings.includes('ROUTES'));
    assert.equal(s.origin.count, 0);
  });

  test('bindings of the wrong kind: TOKEN_CACHE not KV, TOKEN_COORDINATOR not a Durable Object, a rate limit that is a KV namespace', async (t) => {
    const routes = JSON.stringify([{ prefix: '/account/', auth: 'jwt', rate_limit: { binding: 'PER_CUSTOMER', key: 'sub' } }]);
    const s = await startStack({
      bindings: { ROUTES: routes, TOKEN_CACHE: 'a-string' },
      options: { kvNamespaces: ['TOKEN_COORDINATOR', 'PER_CUSTOMER'] },
    });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    const d = res.json.detail;
    assert.match(d, /setting TOKEN_CACHE must be a KV namespace binding/);
    assert.match(d, /setting TOKEN_COORDINATOR must be a Durable Object namespace binding/);
    assert.match(d, /ROUTES\[0\]\.rate_limit\.binding: PER_CUSTOMER is bound, but not to a rate-limiting binding/);
  });

  test('a setting given as a JSON object instead of a string is refused, not read as unset', async (t) => {
    // wrangler passes a TOML table or array in [vars] as JSON: ROUTES = [{ prefix = "/" }].
    const s = await startStack({ bindings: { ROUTES: [{ prefix: '/public/', auth: 'public' }] } });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    assert.match(res.json.detail, /setting ROUTES must be a string/);
  });

  test('a CUSTOMER_ID_KEY that is set but too short says so, not that it must be set', async (t) => {
    const s = await startStack({
      bindings: { CUSTOMER_ID_HEADER: 'x-customer-id', CUSTOMER_ID_KEY: Buffer.from('planted-secret-Kd2').toString('base64') },
    });
    t.after(() => s.close());
    const res = await post(s);
    assertConfigProblem(res);
    assert.match(res.json.detail, /setting CUSTOMER_ID_KEY decodes to fewer than 32 bytes/);
    assert.doesNotMatch(res.json.detail, /must be set/);
    assertNoValues(s, res);
  });
});
