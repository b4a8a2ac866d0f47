// The access token: fetched about once per lifetime (isolate memory, then KV), never a secret in
// KV, and the client authentication methods on the wire.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import {
  API_KEY,
  CLIENT_ID,
  CLIENT_SECRET,
  baseBindings,
  read,
  sleep,
  startStack,
  tempDir,
  withJwt,
} from './harness.mjs';
import { makeKey, signJwt, startOrigin, startTokenEndpoint } from './servers.mjs';

async function ok(gw, jwt, path = '/account/getprofile') {
  const res = await gw.fetch(path, { method: 'POST', headers: withJwt(jwt), body: '{}' });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return res;
}

describe('token cache', () => {
  test('100 sequential requests: exactly 1 token-endpoint call, every request carries that token', async (t) => {
    const s = await startStack();
    t.after(() => s.close());
    for (let i = 0; i < 100; i++) await ok(s.gw, s.jwt);
    assert.equal(s.token.count, 1);
    assert.equal(s.origin.count, 100);
    const tokens = new Set(s.origin.requests.map((r) => r.headers.authorization));
    assert.deepEqual([...tokens], [`Bearer ${s.token.issued[0]}`]);
  });

  test('50 concurrent requests on a cold isolate: exactly 1 token-endpoint call', async (t) => {
    // A slow endpoint, so that every request arrives while the one fill is in flight.
    const s = await startStack({ tokenOptions: { delayMs: 300 } });
    t.after(() => s.close());
    const results = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await s.gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(s.jwt) });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    assert.deepEqual(results, Array(50).fill(200));
    assert.equal(s.token.count, 1, `token endpoint called ${s.token.count} times`);
    assert.equal(s.origin.count, 50);
  });

  test('a second isolate on the same KV reuses the token: 0 more calls', async (t) => {
    const kvDir = tempDir();
    const [origin, token, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      makeKey('RS256'),
    ]);
    t.after(async () => {
      await Promise.all([origin.close(), token.close()]);
      kvDir.rm();
    });
    const bindings = baseBindings({ origin, token, key });
    const jwt = await signJwt(key);

    const first = (await startStack({ servers: false, bindings, kvPersist: kvDir.dir })).gw;
    try {
      await ok(first, jwt);
      await ok(first, jwt);
    } finally {
      await first.dispose();
    }
    assert.equal(token.count, 1);

    const second = (await startStack({ servers: false, bindings, kvPersist: kvDir.dir })).gw;
    try {
      await ok(second, jwt);
      await ok(second, jwt);
      const logs = await second.waitForRequestLogs(2);
      assert.equal(logs[0]?.token_source, 'kv', `first request of the new isolate: ${JSON.stringify(logs[0])}`);
    } finally {
      await second.dispose();
    }
    assert.equal(token.count, 1, 'the second isolate called the token endpoint');
    assert.equal(origin.requests[3].headers.authorization, `Bearer ${token.issued[0]}`);
  });

  test('KV never holds CLIENT_SECRET or API_KEY; its keys never hold the access token', async (t) => {
    const s = await startStack();
    t.after(() => s.close());
    await ok(s.gw, s.jwt);
    await ok(s.gw, s.jwt, '/account/other');
    const entries = await s.gw.kvEntries();
    assert.ok(entries.length >= 1, 'the access token was not cached in KV');
    for (const { name, value } of entries) {
      for (const secret of [CLIENT_SECRET, API_KEY]) {
        assert.ok(!name.includes(secret), `KV key ${name} holds a secret`);
        assert.ok(!String(value).includes(secret), `KV value of ${name} holds a secret`);
      }
      assert.ok(!name.includes(s.token.issued[0]), `KV key ${name} holds the access token`);
    }
  });

  test('with TOKEN_ENCRYPTION_KEY, the access token is not readable in KV, and a second isolate can still use it', async (t) => {
    const kvDir = tempDir();
    const encKey = Buffer.alloc(32, 7).toString('base64');
    const s = await startStack({ bindings: { TOKEN_ENCRYPTION_KEY: encKey }, kvPersist: kvDir.dir });
    t.after(async () => {
      await s.close();
      kvDir.rm();
    });
    await ok(s.gw, s.jwt);
    const entries = await s.gw.kvEntries();
    assert.ok(entries.length >= 1);
    for (const { name, value } of entries) {
      assert.ok(!String(value).includes(s.token.issued[0]), `KV value of ${name} holds the access token in clear`);
      assert.ok(!String(value).includes(encKey), 'KV holds the encryption key');
    }
    await s.gw.dispose();
    const again = (await startStack({ servers: false,
      bindings: baseBindings({ origin: s.origin, token: s.token, key: s.key, TOKEN_ENCRYPTION_KEY: encKey }),
      kvPersist: kvDir.dir,
    })).gw;
    try {
      await ok(again, s.jwt);
    } finally {
      await again.dispose();
    }
    assert.equal(s.token.count, 1, 'the sealed token was not reused');
  });

  test('a token is not used after its expiry: expires_in "1" means a new token a second later', async (t) => {
    const s = await startStack({ tokenOptions: { expiresIn: 1 } });
    t.after(() => s.close());
    await ok(s.gw, s.jwt);
    assert.equal(s.token.count, 1);
    await sleep(1100);
    await ok(s.gw, s.jwt);
    assert.equal(s.token.count, 2, 'the expired token was used again');
    assert.equal(s.origin.last().headers.authorization, `Bearer ${s.token.issued[1]}`);
  });

  test('expires_in as a number is accepted too', async (t) => {
    const s = await startStack({ tokenOptions: { mode: 'ok-number' } });
    t.after(() => s.close());
    await ok(s.gw, s.jwt);
    await ok(s.gw, s.jwt);
    assert.equal(s.token.count, 1);
  });
});

describe('token request on the wire', () => {
  let stacks = [];
  after(() => Promise.all(stacks.map((s) => s.close())));

  test('default (client_secret_post): id and secret in the form body, grant_type kept in the URL', async () => {
    const s = await startStack();
    stacks.push(s);
    await ok(s.gw, s.jwt);
    const call = s.token.calls[0];
    assert.equal(call.method, 'POST');
    assert.equal(call.url, '/oauth/access_token?grant_type=client_credentials', 'TOKEN_URL used verbatim');
    assert.match(call.headers['content-type'], /^application\/x-www-form-urlencoded/);
    assert.equal(call.authMethod, 'post');
    assert.equal(call.form.client_id, CLIENT_ID);
    assert.equal(call.form.client_secret, CLIENT_SECRET);
    assert.equal(call.headers.authorization, undefined);
    assert.equal(call.form.scope, undefined, 'no scope unless TOKEN_SCOPE is set');
    const inQuery = new URL(call.url, 'http://x').searchParams.getAll('grant_type');
    const inBody = new URLSearchParams(call.body).getAll('grant_type');
    assert.deepEqual([...inQuery, ...inBody], ['client_credentials'], 'grant_type sent exactly once');
  });

  test('client_secret_basic: HTTP Basic with form-urlencoded id and secret, nothing secret in the body', async () => {
    const id = 'client id/with:odd+chars';
    const secret = 'se cret:with/odd+chars&=%';
    const [origin, token, key] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: id, clientSecret: secret }),
      makeKey('RS256'),
    ]);
    const gw = (await startStack({ servers: false,
      bindings: baseBindings({
        origin,
        token,
        key,
        CLIENT_ID: id,
        CLIENT_SECRET: secret,
        TOKEN_URL: token.url,
        TOKEN_CLIENT_AUTH: 'client_secret_basic',
      }),
    })).gw;
    stacks.push({ close: async () => { await gw.dispose(); await Promise.all([origin.close(), token.close()]); } });
    const res = await read(await gw.fetch('/x', { headers: withJwt(await signJwt(key)) }));
    assert.equal(res.status, 200, res.text);
    const call = token.calls[0];
    assert.equal(call.authMethod, 'basic');
    const encode = (v) => new URLSearchParams({ v }).toString().slice(2);
    assert.equal(call.basic.rawId, encode(id), 'the id is form-urlencoded before base64');
    assert.equal(call.basic.rawSecret, encode(secret), 'the secret is form-urlencoded before base64');
    assert.equal(call.basic.id, id);
    assert.equal(call.basic.secret, secret);
    assert.equal(call.form.client_secret, undefined, 'the secret is also in the body');
    assert.equal(call.form.grant_type, 'client_credentials', 'grant_type is in the body when the URL has none');
    assert.equal(origin.last().headers.authorization, `Bearer ${token.issued[0]}`);
  });

  test('TOKEN_SCOPE is sent as scope', async () => {
    const s = await startStack({ bindings: { TOKEN_SCOPE: 'profile:read accounts' } });
    stacks.push(s);
    await ok(s.gw, s.jwt);
    assert.equal(s.token.calls[0].form.scope, 'profile:read accounts');
  });
});
