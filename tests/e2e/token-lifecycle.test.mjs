// The access token's lifecycle, end to end (issue #4): one fill for a cold burst, the refresh
// ahead of expiry that no request waits for and that never lets an expired token through (the
// origin checks every token), one replay after the origin refuses a token, outages with and
// without a cached token, encryption at rest across refreshes, corrupted KV values, and the
// scheduled pre-warm.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  baseBindings,
  read,
  scheduled,
  sleep,
  startStack,
  tempDir,
  waitFor,
  withJwt,
} from './harness.mjs';

const ENC_KEY = Buffer.alloc(32, 9).toString('base64');

const post = (gw, jwt, body = '{}') =>
  gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt), body }).then(read);

/** `loops` concurrent callers, each sending one request after another until `ms` have passed. */
async function load(gw, jwt, { ms, loops = 4, gapMs = 10 }) {
  const until = Date.now() + ms;
  const results = [];
  await Promise.all(
    Array.from({ length: loops }, async () => {
      while (Date.now() < until) {
        const res = await post(gw, jwt);
        results.push({ at: Date.now(), status: res.status, retryAfter: res.headers.get('retry-after'), text: res.text });
        if (gapMs) await sleep(gapMs);
      }
    }),
  );
  return results;
}

const refreshLines = (gw) => gw.jsonLogs().filter((l) => l.event === 'token_refresh');

describe('token lifecycle', () => {
  test('1000 concurrent requests on a cold isolate: 1 token-endpoint call', async (t) => {
    const s = await startStack({ tokenOptions: { delayMs: 500 } });
    t.after(() => s.close());
    const statuses = await Promise.all(
      Array.from({ length: 1000 }, async () => {
        const res = await s.gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(s.jwt) });
        await res.arrayBuffer();
        return res.status;
      }),
    );
    assert.deepEqual(
      statuses.filter((x) => x !== 200),
      [],
    );
    assert.equal(s.token.count, 1, `token endpoint called ${s.token.count} times`);
    assert.equal(s.origin.count, 1000);
  });

  test('a token expiring during a run is refreshed ahead: no request waits, none is sent expired', async (t) => {
    // A 4 s token: usable 3.6 s, refreshed from about 1.35 to 1.8 s into its life.
    const s = await startStack({ tokenOptions: { expiresIn: 4 } });
    t.after(() => s.close());
    s.origin.checkTokens((tok) => s.token.isLive(tok));
    const results = await load(s.gw, s.jwt, { ms: 9000 });
    const failed = results.filter((r) => r.status !== 200);
    assert.deepEqual(failed, [], 'every request got 200');
    assert.equal(s.origin.requests.filter((r) => r.refusedToken).length, 0, 'the origin saw an expired token');
    // About one refresh per 1.35–1.8 s over 9 s, plus the first fill.
    assert.ok(s.token.count >= 4 && s.token.count <= 9, `token endpoint called ${s.token.count} times`);
    const logs = await s.gw.waitForRequestLogs(results.length);
    const fromEndpoint = logs.filter((l) => l.token_source === 'endpoint');
    assert.equal(fromEndpoint.length, 1, 'only the first request waited for the token endpoint');
    const ahead = logs.filter((l) => l.token_refresh === 'ahead');
    await waitFor(() => refreshLines(s.gw).length >= ahead.length);
    const refreshes = refreshLines(s.gw);
    assert.equal(refreshes.length, ahead.length, 'one refresh line per claimed refresh');
    assert.ok(refreshes.every((l) => l.token === 'refreshed' && l.token_source === 'endpoint'), JSON.stringify(refreshes));
    assert.equal(s.token.count, 1 + refreshes.length);
    for (const l of logs) assert.ok(['memory', 'endpoint'].includes(l.token_source), JSON.stringify(l));
  });

  test('the origin refusing a token once: 200, one replay, one new token', async (t) => {
    const s = await startStack();
    t.after(() => s.close());
    assert.equal((await post(s.gw, s.jwt)).status, 200);
    s.origin.reset();
    s.origin.unauthorized(1);
    const res = await post(s.gw, s.jwt, '{"replay":"me"}');
    assert.equal(res.status, 200, res.text);
    assert.equal(s.origin.count, 2, 'exactly one replay');
    assert.equal(s.token.count, 2);
    assert.equal(s.origin.requests[1].body.toString(), '{"replay":"me"}');
    assert.equal(s.origin.requests[1].headers.authorization, `Bearer ${s.token.issued[1]}`);
    const logs = await s.gw.waitForRequestLogs(2);
    assert.equal(logs[1].replayed, true);
    assert.equal(logs[1].token_refresh, 'after_401');
  });

  test('a revoked token hit by 20 concurrent requests: all 200, one new token for all of them', async (t) => {
    const s = await startStack();
    t.after(() => s.close());
    assert.equal((await post(s.gw, s.jwt)).status, 200);
    s.origin.rejectToken(s.token.issued[0]);
    s.token.setMode('slow', { delayMs: 200 });
    const results = await Promise.all(Array.from({ length: 20 }, () => post(s.gw, s.jwt)));
    assert.deepEqual(
      results.map((r) => r.status),
      Array(20).fill(200),
    );
    assert.equal(s.token.count, 2, 'one new token');
    const replays = s.origin.requests.filter((r) => r.headers.authorization === `Bearer ${s.token.issued[1]}`);
    assert.equal(replays.length, 20, 'each request replayed once with the new token');
  });

  test('a body over 64 KiB of unknown length is streamed, not replayed: 503 Retry-After 1, never the challenge', async (t) => {
    const s = await startStack();
    t.after(() => s.close());
    const big = Buffer.alloc(200 * 1024, 7);
    s.origin.unauthorized(1);
    const res = await post(s.gw, s.jwt, big);
    assert.equal(res.status, 503, res.text);
    assert.equal(res.headers.get('retry-after'), '1');
    assert.equal(res.headers.get('www-authenticate'), null);
    assert.equal(s.origin.count, 1);
    assert.equal(s.origin.requests[0].body.length, big.length, 'the body reached the origin whole');
    const [log] = await s.gw.waitForRequestLogs(1);
    assert.equal(log.replayed, false);
    assert.equal(log.replay_skipped, 'body_not_kept');
    // The refused token was still dropped: the next request carries a new one.
    assert.equal((await post(s.gw, s.jwt)).status, 200);
    assert.equal(s.origin.last().headers.authorization, `Bearer ${s.token.issued[1]}`);
  });

  test('token endpoint down with a valid token cached: every request 200 until its margin, never an expired token', async (t) => {
    // A 10 s token: usable for 9 s; refresh attempts from about 3.4 s on fail and back off.
    const s = await startStack({ tokenOptions: { expiresIn: 10 } });
    t.after(() => s.close());
    s.origin.checkTokens((tok) => s.token.isLive(tok));
    assert.equal((await post(s.gw, s.jwt)).status, 200);
    const obtained = Date.now();
    s.token.setMode('down');
    const results = await load(s.gw, s.jwt, { ms: 8000 - (Date.now() - obtained) });
    assert.deepEqual(
      results.filter((r) => r.status !== 200),
      [],
      'a request failed while a valid token was cached',
    );
    // Attempts at ~3.4–4.5 s and 2 s later (then 4 s later: past the run).
    assert.ok(s.token.count >= 2 && s.token.count <= 4, `token endpoint called ${s.token.count} times`);
    const failedRefreshes = refreshLines(s.gw).filter((l) => l.token === 'failed');
    assert.ok(failedRefreshes.length >= 1);
    assert.equal(failedRefreshes[0].token_error, 'token_endpoint_unreachable');
    // Past the margin the token is not sent any more: 503, and the origin saw no expired token.
    await sleep(Math.max(0, obtained + 9100 - Date.now()));
    const late = await post(s.gw, s.jwt);
    assert.equal(late.status, 503, late.text);
    assert.match(late.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
    assert.equal(s.origin.requests.filter((r) => r.refusedToken).length, 0);
  });

  test('token endpoint down with nothing cached: 503 with Retry-After, one probe per half second at most', async (t) => {
    const s = await startStack({ tokenOptions: { mode: 'down' } });
    t.after(() => s.close());
    const started = Date.now();
    const results = await load(s.gw, s.jwt, { ms: 4500, loops: 8, gapMs: 10 });
    const elapsed = Date.now() - started;
    for (const r of results) {
      assert.equal(r.status, 503, r.text);
      assert.match(r.retryAfter ?? '', /^[1-9][0-9]*$/);
    }
    // One call at a time, at most one per 0.5 s: not one per request.
    const bound = Math.ceil(elapsed / 500) + 1;
    assert.ok(s.token.count <= bound, `token endpoint called ${s.token.count} times in ${elapsed} ms`);
    assert.ok(s.token.count < results.length / 2, `${s.token.count} calls for ${results.length} requests`);
    assert.equal(s.origin.count, 0);
    // Up again: the next request is served, no back-off to wait out.
    s.token.setMode('ok');
    assert.equal((await post(s.gw, s.jwt)).status, 200);
  });

  test('with TOKEN_ENCRYPTION_KEY, KV never holds a token in clear, across refreshes', async (t) => {
    const s = await startStack({ bindings: { TOKEN_ENCRYPTION_KEY: ENC_KEY }, tokenOptions: { expiresIn: 4 } });
    t.after(() => s.close());
    const until = Date.now() + 5000;
    let checks = 0;
    while (Date.now() < until) {
      assert.equal((await post(s.gw, s.jwt)).status, 200);
      for (const { value } of await s.gw.kvEntries()) {
        assert.match(value, /^gcm1\./);
        for (const tok of s.token.issued) assert.ok(!value.includes(tok), 'a token in clear in KV');
        checks++;
      }
      await sleep(100);
    }
    assert.ok(s.token.count >= 3, `only ${s.token.count} tokens: no refresh happened`);
    assert.ok(checks > 10);
    for (const tok of s.token.issued) assert.ok(!s.gw.output().includes(tok), 'a token in the logs');
  });

  for (const [what, encrypted, corrupt] of [
    ['a truncated sealed value', true, (v) => v.slice(0, -6)],
    ['a sealed value with a flipped byte', true, (v) => `${v.slice(0, 20)}${v[20] === 'A' ? 'B' : 'A'}${v.slice(21)}`],
    ['a clear value that is not JSON', false, () => '{"t":'],
    ['a clear value where a sealed one is expected', true, () => JSON.stringify({ t: 'forged', o: Date.now(), e: Date.now() + 3600e3 })],
  ]) {
    test(`a corrupted KV value is a miss, not an error: ${what}`, async (t) => {
      const kvDir = tempDir();
      const s = await startStack({ bindings: encrypted ? { TOKEN_ENCRYPTION_KEY: ENC_KEY } : {}, kvPersist: kvDir.dir });
      t.after(async () => {
        await s.close();
        kvDir.rm();
      });
      assert.equal((await post(s.gw, s.jwt)).status, 200);
      const [entry] = await s.gw.kvEntries();
      await s.gw.kv.put(entry.name, corrupt(entry.value));
      await s.gw.dispose();
      const bindings = baseBindings({ origin: s.origin, token: s.token, key: s.key, ...(encrypted ? { TOKEN_ENCRYPTION_KEY: ENC_KEY } : {}) });
      const again = (await startStack({ servers: false, bindings, kvPersist: kvDir.dir })).gw;
      t.after(() => again.dispose());
      const res = await post(again, s.jwt);
      assert.equal(res.status, 200, res.text);
      const [log] = await again.waitForRequestLogs(1);
      assert.equal(log.token_source, 'endpoint');
      assert.equal(s.token.count, 2);
      assert.equal(s.origin.last().headers.authorization, `Bearer ${s.token.issued[1]}`);
    });
  }

  test('a rotated TOKEN_ENCRYPTION_KEY makes the old KV value a miss', async (t) => {
    const kvDir = tempDir();
    const s = await startStack({ bindings: { TOKEN_ENCRYPTION_KEY: ENC_KEY }, kvPersist: kvDir.dir });
    t.after(async () => {
      await s.close();
      kvDir.rm();
    });
    assert.equal((await post(s.gw, s.jwt)).status, 200);
    await s.gw.dispose();
    const rotated = Buffer.alloc(32, 10).toString('base64');
    const again = (await startStack({ servers: false,
      bindings: baseBindings({ origin: s.origin, token: s.token, key: s.key, TOKEN_ENCRYPTION_KEY: rotated }),
      kvPersist: kvDir.dir,
    })).gw;
    t.after(() => again.dispose());
    assert.equal((await post(again, s.jwt)).status, 200);
    assert.equal(s.token.count, 2);
  });

  test('the scheduled handler pre-warms: the first request after a quiet spell finds the token in KV', async (t) => {
    const kvDir = tempDir();
    const s = await startStack({ kvPersist: kvDir.dir });
    t.after(async () => {
      await s.close();
      kvDir.rm();
    });
    const first = await scheduled(s.gw);
    assert.equal(first.outcome, 'ok');
    assert.equal(s.token.count, 1);
    await scheduled(s.gw);
    assert.equal(s.token.count, 1, 'a fresh token is left alone');
    const lines = await waitFor(() => {
      const l = s.gw.jsonLogs().filter((x) => x.event === 'scheduled');
      return l.length >= 2 && l;
    });
    assert.deepEqual(
      lines.map((l) => [l.token, l.token_source]),
      [
        ['refreshed', 'endpoint'],
        ['fresh', undefined],
      ],
    );
    // Another isolate (as a request would land on), same KV: no endpoint call.
    await s.gw.dispose();
    const gw = (await startStack({ servers: false, bindings: baseBindings({ origin: s.origin, token: s.token, key: s.key }), kvPersist: kvDir.dir })).gw;
    t.after(() => gw.dispose());
    assert.equal((await post(gw, s.jwt)).status, 200);
    const [log] = await gw.waitForRequestLogs(1);
    assert.equal(log.token_source, 'kv');
    assert.equal(s.token.count, 1);
  });

  test('a refused client is logged as a configuration error and not retried in a loop', async (t) => {
    const s = await startStack({ tokenOptions: { mode: 'invalid-client' } });
    t.after(() => s.close());
    for (let i = 0; i < 10; i++) {
      const res = await post(s.gw, s.jwt);
      assert.equal(res.status, 503);
      if (i === 0) assert.equal(res.headers.get('retry-after'), '60');
    }
    assert.equal(s.token.count, 1);
    const logs = await s.gw.waitForRequestLogs(10);
    // The attempt's line goes to the error stream, the others to the normal one.
    const flagged = logs.filter((l) => l.config_error !== undefined);
    assert.equal(flagged.length, 1, 'logged once per attempt, not per request');
    assert.match(flagged[0].config_error, /CLIENT_SECRET/);
    assert.equal(flagged[0].token_error, 'token_client_rejected');
    assert.ok(logs.every((l) => l.outcome === 'token_client_rejected'));
    assert.ok(!s.gw.output().includes('test-client-secret'), 'the secret is in the logs');
  });
});
