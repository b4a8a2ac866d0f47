// The fault soak's judgement (bench/lib/chaos-classify.mjs) and its timeline's label layout
// (bench/lib/timeline.mjs): pure functions, checked on hand-made evidence in milliseconds. The
// soak itself (npm run bench:chaos) is never part of the suite. Written as a checklist of every
// way an answer can be judged: each rule, each dependency, each excuse and its limits.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { EDGE_MS, classify, tokenMarginMs } from '../../bench/lib/chaos-classify.mjs';
import { placeInLanes, textWidth, timeStep } from '../../bench/lib/timeline.mjs';

const S = 1000;
const LIFE = 20 * S;
// A token endpoint that was down from 100 s to 130 s, a JWKS down from 200 s to 220 s,
// introspection down from 300 s to 320 s (times in ms from 0).
const FAULTS = [
  { dep: 'token', from: 100 * S, to: 130 * S },
  { dep: 'jwks', from: 200 * S, to: 220 * S },
  { dep: 'introspection', from: 300 * S, to: 320 * S },
];

/** Evidence with `extra` merged in; isolate 0 holds key k1 (fetched at 1 s), nothing else. */
function evidence(extra = {}) {
  return {
    coordinated: false,
    faults: FAULTS,
    token: [],
    jwks: [{ tag: 'i0', at: 1 * S, doneAt: 1 * S + 5, status: 200, kids: ['k1'] }],
    introspection: [],
    originTimeoutMs: 8 * S,
    originHungMs: new Map(),
    ...extra,
  };
}
/** A token call: obtained at `at` by `tag`, living LIFE. */
const tokenCall = (tag, at, extra = {}) => ({ tag, at, doneAt: at + 5, status: 200, expiresAt: at + LIFE, ...extra });
const failedCall = (tag, at) => ({ tag, at, doneAt: at + 2, status: 0 });
/** An answer of isolate 0 sent at `t`, answered 10 ms later. */
const answer = (t, extra = {}) => ({ isolate: 0, kind: 'jwt-repeat', valid: true, kid: 'k1', status: 200, problem: null, requestId: 'r', start: t, end: t + 10, ...extra });
const judge = (a, ev, edge) => classify(a, ev, { lifetimeMs: LIFE, ...(edge === undefined ? {} : { edge }) });
const verdict = (a, ev, edge) => judge(a, ev, edge).verdict;

const TOKEN_503 = { status: 503, problem: 'upstream-credentials' };
const KEYS_503 = { status: 503, problem: 'key-set-unavailable' };
const INTRO_503 = { status: 503, problem: 'introspection-unavailable' };
const UNKNOWN_KID_401 = { status: 401, problem: 'invalid-token' };

describe('the soak classifier: served, bad input and holes', () => {
  test('a valid request answered 2xx is served; an invalid one answered 2xx is a hole', () => {
    const ev = evidence();
    assert.equal(verdict(answer(50 * S), ev), 'ok');
    for (const kind of ['jwt-invalid', 'session-invalid']) {
      assert.equal(verdict(answer(50 * S, { kind, valid: false }), ev), 'accepted', kind);
    }
  });

  test('an invalid request refused with any 4xx is expected, whatever the faults', () => {
    const ev = evidence();
    for (const t of [50 * S, 110 * S, 210 * S, 310 * S]) {
      for (const status of [400, 401, 403]) {
        assert.deepEqual(judge(answer(t, { valid: false, status, problem: 'invalid-token' }), ev), { verdict: 'expected', rule: 'bad input' });
      }
    }
  });

  test('no answer, a 500 or an origin error with every dependency up is lost', () => {
    const ev = evidence({ token: [tokenCall('i0', 40 * S)] });
    assert.equal(judge(answer(50 * S, { status: 0 }), ev).rule, 'no answer');
    assert.equal(verdict(answer(50 * S, { status: 500, problem: 'internal' }), ev), 'lost');
    assert.equal(verdict(answer(50 * S, { status: 502, problem: 'origin-refused-credentials' }), ev), 'lost');
    assert.equal(verdict(answer(50 * S, { status: 502, problem: 'origin-unreachable' }), ev), 'lost');
  });
});

describe('the soak classifier: the token endpoint', () => {
  test('while it is down, a 503 is expected only when no usable token is held', () => {
    // Obtained at 95 s: usable until 95 + 20 - 2 (the margin) = 113 s.
    const ev = evidence({ token: [tokenCall('i0', 95 * S)] });
    assert.equal(tokenMarginMs(LIFE), 2 * S);
    assert.equal(judge(answer(105 * S, TOKEN_503), ev).rule, 'token down, but held what was needed');
    assert.equal(verdict(answer(112 * S, TOKEN_503), ev), 'lost');
    // Inside the margin the token is not usable any more.
    assert.equal(verdict(answer(113.5 * S, TOKEN_503), ev), 'expected');
    assert.equal(verdict(answer(125 * S, TOKEN_503), ev), 'expected');
    // Another isolate's token is not this isolate's.
    assert.equal(verdict(answer(105 * S, { ...TOKEN_503, isolate: 1 }), ev), 'expected');
  });

  test("the coordinator's token counts for every isolate only when the coordinator is bound", () => {
    const calls = [tokenCall('coordinator', 95 * S)];
    assert.equal(verdict(answer(105 * S, TOKEN_503), evidence({ token: calls, coordinated: true })), 'lost');
    assert.equal(verdict(answer(105 * S, TOKEN_503), evidence({ token: calls, coordinated: false })), 'expected');
  });

  test('a token the origin has refused is not held', () => {
    const ev = evidence({ token: [tokenCall('i0', 95 * S, { revokedAt: 100 * S })] });
    assert.equal(verdict(answer(105 * S, TOKEN_503), ev), 'expected');
  });

  test('after recovery a 503 is lost, unless a probe is in flight after failures', () => {
    const ev = evidence({ token: [tokenCall('i0', 60 * S), failedCall('i0', 125 * S)] });
    assert.equal(judge(answer(135 * S, TOKEN_503), ev).rule, 'token after recovery');
    const probing = evidence({ token: [tokenCall('i0', 60 * S), failedCall('i0', 125 * S), { tag: 'i0', at: 135 * S, doneAt: 135 * S + 40, status: 200, expiresAt: 155 * S }] });
    assert.equal(judge(answer(135 * S + 10, TOKEN_503), probing).rule, 'token probe in flight, no usable token');
    // Once the probe has answered, the back-off is over.
    assert.equal(verdict(answer(136 * S, TOKEN_503), probing), 'lost');
  });

  test('an ordinary fill in flight (the call before it succeeded) excuses nothing: requests wait on it', () => {
    // The first token ran out (usable until 58 s); a refill is in flight at 70 s.
    const ev = evidence({ token: [tokenCall('i0', 40 * S), { tag: 'i0', at: 70 * S, doneAt: 70 * S + 40, status: 200, expiresAt: 90 * S }] });
    assert.equal(verdict(answer(70 * S + 10, TOKEN_503), ev), 'lost');
  });

  test(`the edge: ${EDGE_MS} ms around a recovery are given the benefit of the doubt, and only they`, () => {
    const ev = evidence({ token: [] });
    assert.equal(verdict(answer(130 * S + EDGE_MS / 2, TOKEN_503), ev), 'expected');
    assert.equal(verdict(answer(130 * S + EDGE_MS / 2, TOKEN_503), ev, 0), 'lost');
    assert.equal(verdict(answer(130 * S + EDGE_MS * 2, TOKEN_503), ev), 'lost');
  });
});

describe('the soak classifier: the key set', () => {
  const K2 = { kid: 'k2' };
  test('while it is down, a token whose key is held must be served', () => {
    assert.equal(judge(answer(210 * S, KEYS_503), evidence()).rule, 'jwks down, but held what was needed');
  });

  test('while it is down, a new kid is 503 (expected) and never 401 (lost: the caller is blamed)', () => {
    const ev = evidence();
    assert.equal(judge(answer(210 * S, { ...K2, ...KEYS_503 }), ev).rule, 'jwks down, key not held');
    assert.equal(judge(answer(210 * S, { ...K2, ...UNKNOWN_KID_401 }), ev).rule, 'valid request blamed (4xx)');
  });

  test('the refetch limit: 401 for a new kid within 10 s of a good fetch that lacked it, not later, not after a failed one', () => {
    const good = evidence({ jwks: [{ tag: 'i0', at: 50 * S, doneAt: 50 * S + 5, status: 200, kids: ['k1'] }] });
    assert.equal(judge(answer(55 * S, { ...K2, ...UNKNOWN_KID_401 }), good).rule, 'jwks refetch limit (last fetch good, kid new)');
    assert.equal(verdict(answer(61 * S, { ...K2, ...UNKNOWN_KID_401 }), good), 'lost');
    const failed = evidence({ jwks: [{ tag: 'i0', at: 1 * S, doneAt: 1 * S + 5, status: 200, kids: ['k1'] }, { tag: 'i0', at: 218 * S, doneAt: 218 * S + 2, status: 503 }] });
    assert.equal(verdict(answer(222 * S, { ...K2, ...UNKNOWN_KID_401 }), failed), 'lost');
    // …where a 503 is what the contract allows until the isolate may ask again.
    assert.equal(judge(answer(222 * S, { ...K2, ...KEYS_503 }), failed).rule, 'jwks refetch limit, key not held');
    assert.equal(judge(answer(229 * S, { ...K2, ...KEYS_503 }), failed).rule, 'jwks after recovery');
  });

  test('the refetch limit holds across the start of an outage: a good fetch just before it lacked the kid, the isolate has not tried since', () => {
    const justBefore = evidence({ jwks: [{ tag: 'i0', at: 195 * S, doneAt: 195 * S + 5, status: 200, kids: ['k1'] }] });
    assert.equal(judge(answer(203 * S, { ...K2, ...UNKNOWN_KID_401 }), justBefore).rule, 'jwks refetch limit (last fetch good, kid new)');
    // Past the limit the isolate may ask again, learns the set is down: 401 is lost, 503 expected.
    assert.equal(verdict(answer(206 * S, { ...K2, ...UNKNOWN_KID_401 }), justBefore), 'lost');
    assert.equal(judge(answer(206 * S, { ...K2, ...KEYS_503 }), justBefore).rule, 'jwks down, key not held');
  });

  test('a fetch that already held the kid is no excuse for a 401', () => {
    const ev = evidence({ jwks: [{ tag: 'i0', at: 50 * S, doneAt: 50 * S + 5, status: 200, kids: ['k1', 'k2'] }] });
    assert.equal(verdict(answer(55 * S, { ...K2, ...UNKNOWN_KID_401 }), ev), 'lost');
  });

  test('an invalid token naming an unknown kid may be 503 while the set is down, not after', () => {
    const a = (t) => answer(t, { valid: false, kind: 'jwt-invalid', kid: 'unknown-1', ...KEYS_503 });
    assert.equal(verdict(a(210 * S), evidence()), 'expected');
    assert.equal(verdict(a(240 * S), evidence()), 'lost');
  });
});

describe('the soak classifier: introspection', () => {
  const session = (t, extra = {}) => answer(t, { kind: 'session-repeat', kid: undefined, sid: 's1', ...extra });
  const introspected = (at, extra = {}) => ({ tag: 'i0', at, doneAt: at + 5, status: 200, sid: 's1', active: true, exp: 10_000 * S, ...extra });
  const withToken = (calls) => evidence({ introspection: calls, token: [tokenCall('i0', 290 * S), tokenCall('i0', 305 * S), tokenCall('i0', 320 * S)] });

  test('while it is down, a session whose answer is held must be served; one never seen is 503', () => {
    assert.equal(judge(session(310 * S, INTRO_503), withToken([introspected(290 * S)])).rule, 'introspection down, but held what was needed');
    assert.equal(judge(session(310 * S, INTRO_503), withToken([])).rule, 'introspection down, answer not held');
    assert.equal(verdict(session(310 * S, { ...INTRO_503, valid: false, kind: 'session-invalid', sid: 'nobody' }), withToken([])), 'expected');
  });

  test('an answer is held until its exp and at most 5 minutes', () => {
    assert.equal(verdict(session(310 * S, INTRO_503), withToken([introspected(5 * S)])), 'expected');
    assert.equal(verdict(session(310 * S, INTRO_503), withToken([introspected(290 * S, { exp: 305 * S })])), 'expected');
    // Another isolate's answer is not this isolate's.
    assert.equal(verdict(session(310 * S, INTRO_503), withToken([introspected(290 * S, { tag: 'i1' })])), 'expected');
  });

  test('after recovery a 503 is lost; a 401 for a live session always is', () => {
    assert.equal(judge(session(325 * S, INTRO_503), withToken([])).rule, 'introspection after recovery');
    assert.equal(verdict(session(310 * S, { status: 401, problem: 'invalid-token' }), withToken([])), 'lost');
  });
});

describe('the soak classifier: the origin', () => {
  test('a 504 is expected only when the origin was made to wait past its timeout', () => {
    const ev = evidence({ token: [tokenCall('i0', 40 * S)], originHungMs: new Map([['slow', 9 * S], ['fast', 1 * S]]) });
    assert.deepEqual(judge(answer(50 * S, { status: 504, problem: 'origin-timeout', requestId: 'slow' }), ev), { verdict: 'expected', rule: 'origin slower than its timeout' });
    assert.equal(verdict(answer(50 * S, { status: 504, problem: 'origin-timeout', requestId: 'fast' }), ev), 'lost');
    assert.equal(verdict(answer(50 * S, { status: 504, problem: 'origin-timeout', requestId: 'never-seen' }), ev), 'lost');
  });
});

describe('the soak timeline: labels never overlap', () => {
  test('labels in one lane never overlap, whatever their positions', () => {
    let seed = 7;
    const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let round = 0; round < 50; round++) {
      const labels = Array.from({ length: 12 }, () => ({ x: random() * 1000, width: textWidth('x'.repeat(5 + Math.floor(random() * 40)), 10) }));
      const lanes = placeInLanes(labels);
      labels.forEach((a, i) =>
        labels.forEach((b, j) => {
          if (i < j && lanes[i] === lanes[j]) assert.ok(a.x + a.width <= b.x || b.x + b.width <= a.x, `labels ${i} and ${j} overlap in lane ${lanes[i]}`);
        }),
      );
    }
    assert.deepEqual(placeInLanes([{ x: 0, width: 100 }, { x: 50, width: 100 }, { x: 200, width: 10 }]), [0, 1, 0]);
  });

  test("the time axis takes a step its labels fit in", () => {
    for (const pxPerS of [0.5, 1, 2.5, 4, 10]) {
      const step = timeStep(pxPerS, textWidth('480 s'));
      assert.ok(step * pxPerS >= textWidth('480 s'), `${step} s at ${pxPerS} px/s`);
    }
  });
});
