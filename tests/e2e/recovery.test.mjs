// After the wasm traps (a panic ends in `unreachable`, which reaches JavaScript as a
// WebAssembly.RuntimeError), the entry module (src/js/entry.js) answers the next request from a
// fresh wasm instance rather than from one a trap may have left half-way through a change.
//
// A real panic cannot be provoked from outside (that is the point of the fuzzing), so the
// trap is simulated where one would surface: a wrapper module around the built Worker makes
// the next `console.log` the wasm calls throw a RuntimeError, in the middle of a request.

import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { SCRIPT, read, startStack, tempDir, waitFor, withJwt } from './harness.mjs';

const WRAPPER = `
import gateway from './index.js';
const log = console.log;
export default {
  fetch(request, env, ctx) {
    if (request.headers.get('x-test-trap') === '1') {
      console.log = () => {
        console.log = log;
        throw new WebAssembly.RuntimeError('simulated trap');
      };
    }
    return gateway.fetch(request, env, ctx);
  },
};
`;

describe('recovery after a wasm trap', () => {
  test('the request that trapped fails; the next is served by a fresh instance', async (t) => {
    const dir = tempDir('eap-recovery-');
    t.after(() => dir.rm());
    copyFileSync(SCRIPT, path.join(dir.dir, 'index.js'));
    copyFileSync(path.join(path.dirname(SCRIPT), 'index_bg.wasm'), path.join(dir.dir, 'index_bg.wasm'));
    writeFileSync(path.join(dir.dir, 'wrapper.js'), WRAPPER);
    const s = await startStack({ script: path.join(dir.dir, 'wrapper.js') });
    t.after(() => s.close());

    const first = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt) }));
    assert.equal(first.status, 200, first.text);
    const warm = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt) }));
    assert.equal(warm.status, 200, warm.text);
    const before = await s.gw.waitForRequestLogs(2);
    assert.equal(before[1].token_source, 'memory', 'the second request uses the token in memory');

    // The trap: the gateway's log line throws after the origin answered.
    const trapped = await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt, { 'x-test-trap': '1' }) });
    await trapped.arrayBuffer().catch(() => {});
    assert.ok(trapped.status >= 500, `the trapped request answered ${trapped.status}`);

    const after = await read(await s.gw.fetch('/account/getprofile', { headers: withJwt(s.jwt) }));
    assert.equal(after.status, 200, after.text);
    await waitFor(() => s.gw.output().includes('the wasm instance trapped; starting a fresh one'));
    assert.match(s.gw.output(), /the wasm instance trapped; starting a fresh one/);
    // A fresh instance remembers nothing: the token comes from KV now, not from memory.
    const logs = await s.gw.waitForRequestLogs(3);
    assert.equal(logs.at(-1).token_source, 'kv', JSON.stringify(logs.at(-1)));
    assert.equal(s.token.calls.length, 1, 'the token endpoint was called once');
  });
});
