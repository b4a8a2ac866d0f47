// Revocation in the built Worker, with oidc-provider 8 as the real issuer of JWT access tokens.
//
// oidc-provider 8 answers `active: false` when asked to introspect its own JWT-format access
// tokens, so its introspection cannot vouch for them: the first test shows `introspect` pointed
// at it (by discovery) refusing every token, as the reference warns. The others use an RFC 7662
// endpoint written here that checks the JWT against the issuer's key set (jose) and a revocation
// list, and counts its calls: a revocation takes effect within `max_age_seconds`; the answer is
// remembered (one call for many requests); the endpoint down with and without a remembered
// answer. Then the subject-wide cut-off written by `npm run revoke -- --local` into the local KV
// that `wrangler dev` uses, which the Worker in Miniflare then reads (kvPersist pointed at it):
// tokens issued before and after it, `--list` and `--remove`.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';

import { API_KEY, CLIENT_ID, CLIENT_SECRET, read, requestLog, sleep, startStack, tempDir } from './harness.mjs';
import { listen, startOrigin, startTokenEndpoint } from './servers.mjs';
import { startOidcProvider } from './oidc.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RESOURCE = 'https://orders-api.test/';
/** The namespace id wrangler.toml gives TOKEN_CACHE: `wrangler kv --local` stores under it. */
const KV_ID = 'REPLACE_WITH_KV_NAMESPACE_ID';
const run = promisify(execFile);

/** oidc-provider on loopback: client credentials, RFC 9068 JWT access tokens, introspection on. */
async function startOpenIdProvider() {
  const client = (id, secret) => ({
    client_id: id,
    client_secret: secret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'orders:read',
    id_token_signed_response_alg: 'ES256',
  });
  const { server, issuer } = await startOidcProvider({
    // The gateway's own client too: it authenticates at the introspection endpoint.
    clients: [client('orders-client', 'orders-client-secret'), client(CLIENT_ID, CLIENT_SECRET)],
    scope: 'orders:read',
    resource: RESOURCE,
    cookieKey: 'revocation-e2e-cookie-key',
    features: { introspection: { enabled: true } },
  });
  return {
    issuer,
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
    close: () => new Promise((r) => server.close(r)),
  };
}

/**
 * An RFC 7662 endpoint that vouches for the issuer's JWTs: the signature against its key set,
 * `exp`, and a revocation list of `jti`s. Counts calls; `down` makes it drop connections.
 */
async function startIntrospection(issuer) {
  const keys = createRemoteJWKSet(new URL(`${issuer}/jwks`));
  const state = { calls: 0, down: false, revoked: new Set(), clients: [] };
  const server = await listen(async (req, res) => {
    if (state.down) return req.socket.destroy();
    state.calls++;
    let body = '';
    for await (const chunk of req) body += chunk;
    const form = new URLSearchParams(body);
    state.clients.push(form.get('client_id'));
    let answer = { active: false };
    try {
      const { payload } = await jwtVerify(form.get('token') ?? '', keys, { issuer });
      if (!state.revoked.has(payload.jti)) answer = { active: true, sub: payload.sub, exp: payload.exp };
    } catch {
      // Not the issuer's, or expired: inactive.
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer));
  });
  return { ...server, state };
}

const bearer = (t) => ({ authorization: `Bearer ${t}` });

async function startGateway(common, provider, extra = {}) {
  return startStack({
    servers: false,
    bindings: { ...common, JWT_PROVIDERS: JSON.stringify([{ issuer: provider.issuer, audiences: [RESOURCE], ...provider.fields }]) },
    ...extra,
  });
}

describe('revocation against oidc-provider', () => {
  let origin, tokenEndpoint, oidc, introspection, common;

  before(async () => {
    [origin, tokenEndpoint, oidc] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      startOpenIdProvider(),
    ]);
    introspection = await startIntrospection(oidc.issuer);
    common = {
      ORIGIN_URL: origin.url,
      TOKEN_URL: `${tokenEndpoint.url}?grant_type=client_credentials`,
      CLIENT_ID,
      CLIENT_SECRET,
      API_KEY,
      JWT_ALGORITHMS: 'ES256',
    };
  });
  after(async () => {
    await Promise.all([origin?.close(), tokenEndpoint?.close(), oidc?.close(), introspection?.close()]);
  });

  test("introspect pointed at oidc-provider's own endpoint (by discovery) refuses its JWTs: it calls them inactive", async () => {
    const s = await startGateway(common, { issuer: oidc.issuer, fields: { introspect: { max_age_seconds: 60 } } });
    try {
      const res = await read(await s.gw.fetch('/orders', { headers: bearer(await oidc.accessToken()) }));
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.detail, 'The token has been revoked.');
      const log = await requestLog(s.gw, res.headers.get('x-request-id'));
      assert.equal(log.outcome, 'token_revoked');
      assert.equal(log.introspection, 'endpoint');
    } finally {
      await s.close();
    }
  });

  describe('an RFC 7662 endpoint that checks the JWT and a revocation list', () => {
    let s;
    before(async () => {
      s = await startGateway(common, { issuer: oidc.issuer, fields: { introspect: { url: `${introspection.url}/introspect`, max_age_seconds: 2 } } });
    });
    after(() => s?.close());

    const get = async (token) => {
      const forwarded = origin.requests.length;
      const res = await read(await s.gw.fetch('/orders', { headers: bearer(token) }));
      return { ...res, forwarded: origin.requests.length - forwarded, log: await requestLog(s.gw, res.headers.get('x-request-id')) };
    };

    test('an active token passes; the answer is remembered: one call for many requests', async () => {
      const token = await oidc.accessToken();
      const calls = introspection.state.calls;
      for (let i = 0; i < 5; i++) {
        const res = await get(token);
        assert.equal(res.status, 200, res.text);
        assert.equal(res.forwarded, 1);
      }
      assert.equal(introspection.state.calls - calls, 1);
      assert.equal(introspection.state.clients.at(-1), CLIENT_ID, 'the gateway authenticated as its client');
      // The token is nowhere in KV, in clear or as the digest the cache keys by.
      const digest = createHash('sha256').update(token).digest('base64url');
      for (const { name, value } of await s.gw.kvEntries()) {
        for (const needle of [token, token.split('.')[2], digest]) {
          assert.ok(!name.includes(needle) && !String(value).includes(needle), name);
        }
      }
      assert.ok(!s.gw.output().includes(token.split('.')[2]), 'the token is in no log line');
    });

    test('revoked at the endpoint: 401 within max_age_seconds, never forwarded', async () => {
      const token = await oidc.accessToken();
      assert.equal((await get(token)).status, 200);
      introspection.state.revoked.add(decodeJwt(token).jti);
      const remembered = await get(token);
      assert.equal(remembered.status, 200, 'remembered for up to max_age_seconds');
      assert.equal(remembered.log.introspection, 'memory');
      await sleep(2100);
      const res = await get(token);
      assert.equal(res.status, 401, res.text);
      assert.equal(res.json.detail, 'The token has been revoked.');
      assert.match(res.headers.get('www-authenticate'), /error="invalid_token"/);
      assert.equal(res.log.outcome, 'token_revoked');
      assert.equal(res.forwarded, 0);
    });

    test('the endpoint down: a remembered answer serves; without one, 503 with Retry-After', async () => {
      const known = await oidc.accessToken();
      assert.equal((await get(known)).status, 200);
      const unknown = await oidc.accessToken();
      introspection.state.down = true;
      try {
        const served = await get(known);
        assert.equal(served.status, 200, served.text);
        assert.equal(served.log.introspection, 'memory');
        const refused = await get(unknown);
        assert.equal(refused.status, 503, refused.text);
        assert.equal(refused.json.type, 'urn:edge-auth-proxy:problem:introspection-unavailable');
        assert.ok(Number(refused.headers.get('retry-after')) >= 1);
        assert.equal(refused.forwarded, 0);
      } finally {
        introspection.state.down = false;
      }
    });
  });

  test('the cut-off: npm run revoke -- --local writes the local KV the Worker reads; before and after; --list, --remove', async () => {
    const state = tempDir('eap-revoke-');
    const revoke = (...args) => run('node', [path.join(ROOT, 'scripts/revoke.mjs'), ...args, '--local', '--persist-to', state.dir], { cwd: ROOT });
    // Miniflare over wrangler's local state: the same directory, the namespace id wrangler.toml gives.
    const gateway = () => startGateway(common, { issuer: oidc.issuer, fields: {} }, {
      kvPersist: path.join(state.dir, 'v3', 'kv'),
      options: { kvNamespaces: { TOKEN_CACHE: KV_ID } },
    });
    try {
      const before = await oidc.accessToken();
      const { sub, iat } = decodeJwt(before);
      const at = iat + 1;
      const key = `revoked:v1:${createHash('sha256').update(`${oidc.issuer}\n${sub}`).digest('base64url')}`;
      const wrote = await revoke('--iss', oidc.issuer, '--sub', sub, '--at', String(at));
      assert.match(wrote.stdout, new RegExp(`^wrote ${key} = ${at} `));
      while (Math.floor(Date.now() / 1000) < at) await sleep(100);
      const afterwards = await oidc.accessToken();
      assert.ok(decodeJwt(afterwards).iat >= at);
      const listed = await revoke('--list');
      assert.equal(listed.stdout.trim().split('\n').length, 1);
      assert.ok(listed.stdout.startsWith(`${key} ${at} `), listed.stdout);

      let s = await gateway();
      try {
        const refused = await read(await s.gw.fetch('/orders', { headers: bearer(before) }));
        assert.equal(refused.status, 401, refused.text);
        assert.equal(refused.json.detail, 'The token has been revoked.');
        assert.equal((await requestLog(s.gw, refused.headers.get('x-request-id'))).outcome, 'subject_cut_off');
        const passed = await read(await s.gw.fetch('/orders', { headers: bearer(afterwards) }));
        assert.equal(passed.status, 200, passed.text);
      } finally {
        await s.close();
      }

      const removed = await revoke('--remove', '--iss', oidc.issuer, '--sub', sub);
      assert.match(removed.stdout, new RegExp(`^removed ${key} `));
      assert.match((await revoke('--list')).stdout, /^no cut-off/);
      s = await gateway();
      try {
        assert.equal((await s.gw.fetch('/orders', { headers: bearer(before) })).status, 200);
      } finally {
        await s.close();
      }
      for (const out of [wrote, listed, removed]) assert.ok(!out.stdout.includes(before.split('.')[2]));
    } finally {
      state.rm();
    }
  });
});
