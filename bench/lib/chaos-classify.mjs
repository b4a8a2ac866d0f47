// The fault soak's judgement of every answer (bench/chaos.mjs): pure functions over what the
// soak sent and what the loopback dependencies recorded, no I/O, so that
// tests/e2e/chaos-classify.test.mjs checks each rule in milliseconds.
//
// An answer is `ok` (2xx to a valid request), `expected` (a refusal the contract calls for: bad
// input, or a dependency down with nothing usable held), `lost` (a refusal the gateway could have
// avoided: a 5xx while it held what the request needed or after the dependency had recovered, a
// 4xx to a valid request) or `accepted` (an invalid request let through: a hole, worse than lost).
//
// What the gateway "held" is read from the dependencies' side, per isolate: every call carries
// its caller's tag in the URL's query (`i0`, `i1`, …, and `coordinator` for the TokenCoordinator
// object), so the token endpoint says which isolate got which access token and when, the JWKS
// server which key set each isolate fetched, the introspection endpoint which session answers
// each isolate holds. The gateway's own logs are not trusted for this: it is what is judged.
//
// Evidence (`ev`), every time in epoch milliseconds:
//   coordinated        whether TOKEN_COORDINATOR was bound
//   faults             [{ dep: 'token' | 'jwks' | 'introspection', from, to }] the outages
//   token              [{ tag, at, doneAt, status, expiresAt, revokedAt? }] token endpoint calls
//                      (`expiresAt` for an issued token; `revokedAt` once the origin refuses it)
//   jwks               [{ tag, at, doneAt, status, kids }] key set fetches
//   introspection      [{ tag, at, doneAt, status, sid, active, exp }] (`exp` of the answer, ms)
//   originTimeoutMs    ORIGIN_TIMEOUT_MS
//   originHungMs       Map request id → the longest wait the origin put on it
// An answer: { isolate, kind, valid, status, problem, kid?, sid?, requestId, start, end }
// (`start`/`end`: when the soak sent it and read the whole answer; `problem`: the problem+json
// `type` after `urn:edge-auth-proxy:problem:`, or null).

/**
 * The edge around every moment the soak and the gateway both read, in ms: an answer that falls
 * within it of a state change (an outage beginning or ending, a token obtained or running out) is
 * given the benefit of the doubt. Not zero, because the two clocks are not read at the same
 * moment: the soak stamps a request before Miniflare carries it over a loopback hop into
 * workerd, and a server stamps its answer before the gateway reads it; on 2 shared cores those
 * hops take a few ms and, under load, tens. 100 ms is above what was seen and far below any
 * back-off step (2 s). The soak also judges every answer with an edge of 0 and reports how many
 * verdicts the edge changed (`edgeDependent`), so the grace is never silent.
 */
export const EDGE_MS = 100;
/** Contract: a `kid` the held set lacks causes at most one refetch per 10 s per isolate. */
export const REFETCH_LIMIT_MS = 10_000;
/** Contract: an active introspection answer is kept at most 5 minutes. */
export const INTROSPECTION_CAP_MS = 300_000;

/** The safety margin of a token living `lifetimeMs`: a tenth of its life, at most a minute. */
export const tokenMarginMs = (lifetimeMs) => Math.min(Math.floor(lifetimeMs / 10), 60_000);

/** The tags whose calls stand for isolate `i`: its own, and the coordinator's when bound. */
export const tagsFor = (ev, i) => (ev.coordinated ? [`i${i}`, 'coordinator'] : [`i${i}`]);

/** `dep` was down at some moment within `edge` of `t`. */
export function downAround(faults, dep, t, edge) {
  return faults.some((f) => f.dep === dep && f.from - edge <= t && t < f.to + edge);
}

/** The latest outage of `dep` that had ended by `t`, or null. */
export function lastRecovery(faults, dep, t) {
  const ended = faults.filter((f) => f.dep === dep && f.to <= t).map((f) => f.to);
  return ended.length ? Math.max(...ended) : null;
}

/**
 * While backing off, one request at a time may probe the dependency and the others get a 503
 * without waiting (contract, "Dependencies that fail, and recover"); the back-off ends with the
 * first good answer. So a refusal is excused while a call of these tags was in flight during
 * the request AND the call before it had failed (the gateway was backing off). Without a
 * failure before it, an in-flight call is an ordinary fill, which requests wait on: no excuse.
 */
export function probeInFlight(calls, tags, start, end, edge) {
  const mine = calls.filter((c) => tags.includes(c.tag)).sort((a, b) => a.at - b.at);
  return mine.some((c, k) => {
    if (!(c.at <= end && (c.doneAt ?? Infinity) + edge >= start)) return false;
    const before = mine.slice(0, k).filter((p) => p.doneAt !== undefined && p.doneAt <= c.at);
    const last = before[before.length - 1];
    return last !== undefined && last.status !== 200;
  });
}

/**
 * Isolate `i` held an access token usable for the whole request: obtained (by it, or by the
 * coordinator when bound) at least `edge` before the request began, usable (before expiry minus
 * the safety margin) until `edge` after it ended, and not refused by the origin by then.
 */
export function holdsToken(ev, i, start, end, edge, lifetimeMs) {
  const tags = tagsFor(ev, i);
  return ev.token.some(
    (c) =>
      tags.includes(c.tag) &&
      c.status === 200 &&
      c.expiresAt !== undefined &&
      c.doneAt <= start - edge &&
      end + edge < c.expiresAt - tokenMarginMs(lifetimeMs) &&
      !(c.revokedAt !== undefined && c.revokedAt <= end + edge),
  );
}

/** The kids of the set isolate `i` last fetched successfully at least `edge` before `t` (null: none yet). */
export function heldKids(ev, i, t, edge) {
  const got = ev.jwks.filter((c) => c.tag === `i${i}` && c.status === 200 && c.doneAt <= t - edge);
  if (!got.length) return null;
  return got.reduce((a, b) => (b.doneAt > a.doneAt ? b : a)).kids;
}

/** Isolate `i`'s last call to the JWKS URL that began before `t`, or null. */
export function lastJwksCall(ev, i, t) {
  const mine = ev.jwks.filter((c) => c.tag === `i${i}` && c.at <= t);
  return mine.length ? mine.reduce((a, b) => (b.at > a.at ? b : a)) : null;
}

/**
 * Isolate `i` held an active answer for session `sid` for the whole request: introspected at
 * least `edge` before it began, kept until the answer's `exp` and at most 5 minutes after the call.
 */
export function holdsSession(ev, i, sid, start, end, edge) {
  return ev.introspection.some(
    (c) =>
      c.tag === `i${i}` &&
      c.sid === sid &&
      c.status === 200 &&
      c.active === true &&
      c.doneAt <= start - edge &&
      end + edge < Math.min(c.exp ?? Infinity, c.at + INTROSPECTION_CAP_MS),
  );
}

/**
 * Why the gateway could not serve this request, if a dependency it needed was down (or being
 * probed after failures) while the isolate held nothing usable from it: the list of reasons,
 * empty when nothing excuses a refusal.
 */
export function unavailable(a, ev, edge, lifetimeMs) {
  const reasons = [];
  const { isolate: i, start, end } = a;
  // The JWT's key: every token that names a kid needs the key before anything else.
  if (a.kid) {
    const kids = heldKids(ev, i, start, edge);
    if (!kids?.includes(a.kid)) {
      if (downAround(ev.faults, 'jwks', start, edge)) reasons.push('jwks down, key not held');
      else if (probeInFlight(ev.jwks, [`i${i}`], start, end, edge)) reasons.push('jwks probe in flight, key not held');
      // The contract limits unknown-kid refetches to one per 10 s per isolate: within 10 s of
      // its last call the isolate may not ask again, and so cannot have the new key, whether or
      // not the set has gone down since (it has not tried: rule 4 then looks at that last call).
      const last = lastJwksCall(ev, i, start);
      if (last && start - last.at < REFETCH_LIMIT_MS + edge) reasons.push('jwks refetch limit, key not held');
    }
  }
  // An opaque session needs an introspection answer the isolate holds or can get.
  if (a.sid && !holdsSession(ev, i, a.sid, start, end, edge)) {
    if (downAround(ev.faults, 'introspection', start, edge)) reasons.push('introspection down, answer not held');
    else if (probeInFlight(ev.introspection, [`i${i}`], start, end, edge)) reasons.push('introspection probe in flight, answer not held');
  }
  // A request that is forwarded needs an access token.
  if (a.valid && !holdsToken(ev, i, start, end, edge, lifetimeMs)) {
    if (downAround(ev.faults, 'token', start, edge)) reasons.push('token endpoint down, no usable token');
    else if (probeInFlight(ev.token, tagsFor(ev, i), start, end, edge)) reasons.push('token probe in flight, no usable token');
  }
  return reasons;
}

/** Which dependency a gateway error names, from its problem type. */
export function blamed(problem) {
  return (
    {
      'upstream-credentials': 'token',
      'key-set-unavailable': 'jwks',
      'introspection-unavailable': 'introspection',
      'origin-timeout': 'origin',
      'origin-unreachable': 'origin',
      'origin-refused-credentials': 'origin',
    }[problem] ?? null
  );
}

/** Judges one answer: `{ verdict, rule }`. `lifetimeMs`: the access tokens' lifetime. */
export function classify(a, ev, { edge = EDGE_MS, lifetimeMs }) {
  const is2xx = a.status >= 200 && a.status < 300;
  const is4xx = a.status >= 400 && a.status < 500;
  // Rule 1: a valid request answered 2xx is served.
  if (a.valid && is2xx) return { verdict: 'ok', rule: 'served' };
  // Rule 2: an invalid request let through is a hole, whatever else happened.
  if (!a.valid && is2xx) return { verdict: 'accepted', rule: 'invalid request let through' };
  // Rule 3: an invalid request refused with a 4xx got the answer it deserved.
  if (!a.valid && is4xx) return { verdict: 'expected', rule: 'bad input' };
  const reasons = unavailable(a, ev, edge, lifetimeMs);
  if (is4xx) {
    // Rule 4: a valid request refused as the caller's fault. The one excuse is the contract's
    // refetch limit: the isolate's last fetch, within 10 s, succeeded and lacked the new kid, and
    // it may not ask again yet, so `unknown_kid` is all it can know (even if the set has gone
    // down since: it has not tried). Once its last try failed, it knows the set cannot be
    // fetched, and the contract requires 503, never 401: no excuse then.
    const limited = reasons.includes('jwks refetch limit, key not held');
    const last = limited ? lastJwksCall(ev, a.isolate, a.start) : null;
    if (limited && last?.status === 200 && !last.kids?.includes(a.kid)) {
      return { verdict: 'expected', rule: 'jwks refetch limit (last fetch good, kid new)' };
    }
    return { verdict: 'lost', rule: 'valid request blamed (4xx)' };
  }
  // Rule 5: the origin was made to wait longer than ORIGIN_TIMEOUT_MS for this request: a 504
  // is the configured answer.
  if (a.status === 504 && (ev.originHungMs.get(a.requestId) ?? 0) >= ev.originTimeoutMs - edge) {
    return { verdict: 'expected', rule: 'origin slower than its timeout' };
  }
  // Rule 6: a dependency the request needed was down, or being probed after failures, and the
  // isolate held nothing usable from it: a refusal is the contract's answer.
  if (a.status >= 500 && reasons.length) return { verdict: 'expected', rule: reasons[0] };
  // Rule 7: any other refusal was avoidable: named by the dependency the answer blamed and
  // whether it was down then, had recovered, or never failed.
  const dep = blamed(a.problem);
  if (a.status === 0) return { verdict: 'lost', rule: 'no answer' };
  if (!dep) return { verdict: 'lost', rule: `gateway error ${a.status}${a.problem ? ` ${a.problem}` : ''}` };
  if (dep !== 'origin' && downAround(ev.faults, dep, a.start, edge)) return { verdict: 'lost', rule: `${dep} down, but held what was needed` };
  if (dep !== 'origin' && lastRecovery(ev.faults, dep, a.start) !== null) return { verdict: 'lost', rule: `${dep} after recovery` };
  return { verdict: 'lost', rule: `${a.status} ${a.problem} without a fault` };
}
