// Loopback servers for the end-to-end tests. Each one records and counts what it receives, so
// a test can assert on exactly what the gateway sent: a test origin, an OAuth token endpoint and
// a JWKS server; plus key and JWT helpers built on jose.
//
// Every server listens on 127.0.0.1, port 0 (ephemeral), and has an async close().

import { randomBytes } from 'node:crypto';
import http from 'node:http';

import { SignJWT, exportJWK, generateKeyPair, base64url } from 'jose';

// ---------------------------------------------------------------------------------------------
// plumbing

/** Starts an HTTP server on 127.0.0.1:0. `handler(req, res)` may be async. */
export async function listen(handler) {
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err) => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`test server error: ${err.message}`);
      } else {
        res.destroy();
      }
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  let closed = false;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    async close() {
      if (closed) return;
      closed = true;
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A URL on 127.0.0.1 where nothing listens (a port that was just bound and closed). */
export async function closedPortUrl() {
  const s = await listen(() => {});
  await s.close();
  return s.url;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks);
}

/** Headers as a plain object with lower-case names; repeated fields joined with ", ". */
function headerObject(req) {
  const out = {};
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const k = req.rawHeaders[i].toLowerCase();
    const v = req.rawHeaders[i + 1];
    out[k] = k in out ? `${out[k]}, ${v}` : v;
  }
  return out;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Stamps `rec` with when its answer ended: `doneAt` (epoch ms) and `status` (0 when the
 * connection was dropped without an answer). With `rec.at`, the arrival, a record says when a
 * caller was waiting on this server and what it got (the fault soak, bench/chaos.mjs, reads it).
 */
export function stampAnswer(res, rec) {
  res.on('close', () => {
    rec.doneAt = Date.now();
    rec.status = res.headersSent ? res.statusCode : 0;
  });
}

// ---------------------------------------------------------------------------------------------
// the origin

/**
 * The test origin. Records `{ method, url (path+query), headers, rawHeaders, body }` of every
 * request. Behaviour for the next requests is set with the methods below; `reset()` restores
 * the default (200 JSON echo) and clears the records.
 */
export async function startOrigin({ name = 'origin' } = {}) {
  const requests = [];
  let unauthorizedLeft = 0;
  const REFUSAL = ['Bearer error="invalid_token"'];
  let unauthorizedAnswer = { challenges: REFUSAL, body: undefined };
  let hangMs = 0;
  let bigBodyBytes = 0;
  let custom = null;
  let tokenCheck = null;
  const rejectedTokens = new Set();

  const s = await listen(async (req, res) => {
    const at = Date.now();
    const body = await readBody(req);
    const rec = {
      method: req.method,
      url: req.url,
      headers: headerObject(req),
      rawHeaders: req.rawHeaders.slice(),
      body,
      at,
      hungMs: hangMs,
    };
    requests.push(rec);
    const bearer = /^Bearer (.+)$/.exec(rec.headers.authorization ?? '')?.[1];
    if (tokenCheck && !tokenCheck(bearer)) {
      rec.refusedToken = true;
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end(JSON.stringify({ error: 'invalid_token', origin: name, why: 'token check' }));
      return;
    }
    if (bearer !== undefined && rejectedTokens.has(bearer)) {
      rec.refusedToken = true;
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer error="invalid_token"' });
      res.end(JSON.stringify({ error: 'invalid_token', origin: name, why: 'revoked' }));
      return;
    }
    if (unauthorizedLeft > 0) {
      unauthorizedLeft--;
      const { challenges, body: answer } = unauthorizedAnswer;
      const headers = [['content-type', 'application/json'], ['x-origin-401', name]];
      // One WWW-Authenticate field per challenge given, in order; none for [].
      for (const c of challenges) headers.push(['www-authenticate', c]);
      res.writeHead(401, headers.flat());
      res.end(answer ?? JSON.stringify({ error: 'invalid_token', origin: name }));
      return;
    }
    if (hangMs > 0) {
      // Answer nothing for hangMs (the gateway should give up first), then answer anyway.
      await sleep(hangMs);
      if (res.destroyed) return;
    }
    if (custom) {
      await custom(req, res, rec);
      return;
    }
    if (bigBodyBytes > 0) {
      // A streamed body, in chunks, with a predictable pattern the test can check.
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-origin': name });
      const chunk = 64 * 1024;
      for (let sent = 0; sent < bigBodyBytes; sent += chunk) {
        const n = Math.min(chunk, bigBodyBytes - sent);
        const buf = Buffer.alloc(n);
        for (let i = 0; i < n; i++) buf[i] = (sent + i) % 251;
        if (!res.write(buf)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
      return;
    }
    const answer = JSON.stringify({
      origin: name,
      method: req.method,
      url: req.url,
      bodyBytes: body.length,
    });
    res.writeHead(200, {
      'content-type': 'application/json',
      'x-origin': name,
      'cache-control': 'private, max-age=0',
      'set-cookie': 'origin-session=abc; Path=/; HttpOnly',
      // hop-by-hop fields in the response: must not reach the caller
      'keep-alive': 'timeout=5',
      'proxy-connection': 'keep-alive',
      'x-origin-hop': 'listed-in-connection',
      connection: 'x-origin-hop',
    });
    res.end(answer);
  });

  return {
    name,
    url: s.url,
    port: s.port,
    /** Every request: `{ method, url, headers, rawHeaders, body, at (arrival, epoch ms), hungMs }`. */
    requests,
    get count() {
      return requests.length;
    },
    last() {
      return requests[requests.length - 1];
    },
    /**
     * The next `n` requests get 401: by default with `WWW-Authenticate: Bearer
     * error="invalid_token"` (as when the origin no longer accepts an access token);
     * `challenges` gives the WWW-Authenticate fields instead (`[]`: none), `body` the body.
     */
    unauthorized(n = 1, { challenges = REFUSAL, body } = {}) {
      unauthorizedLeft = n;
      unauthorizedAnswer = { challenges, body };
    },
    /** Every request from now on waits `ms` before any answer (its record's `hungMs`); 0 stops. */
    hang(ms) {
      hangMs = ms;
    },
    /** Answers a streamed body of `bytes` bytes (byte i = i % 251). */
    bigBody(bytes) {
      bigBodyBytes = bytes;
    },
    /** `fn(req, res, record)` answers instead of the default. */
    respond(fn) {
      custom = fn;
    },
    /**
     * `fn(accessToken)` decides whether the bearer token is accepted (e.g. the token endpoint's
     * `isLive`); a refused request gets 401 and its record `refusedToken: true`. `null` stops.
     */
    checkTokens(fn) {
      tokenCheck = fn;
    },
    /** Every request bearing `accessToken` gets 401 from now on (a revoked token). */
    rejectToken(accessToken) {
      rejectedTokens.add(accessToken);
    },
    reset() {
      requests.length = 0;
      unauthorizedLeft = 0;
      unauthorizedAnswer = { challenges: REFUSAL, body: undefined };
      hangMs = 0;
      bigBodyBytes = 0;
      custom = null;
      tokenCheck = null;
      rejectedTokens.clear();
    },
    close: s.close,
  };
}

/** The expected byte pattern of `origin.bigBody(n)`. */
export function bigBodyPattern(bytes) {
  const buf = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) buf[i] = i % 251;
  return buf;
}

// ---------------------------------------------------------------------------------------------
// the token endpoint

/** RFC 6749 §2.3.1: form-urlencoded id and secret, then base64. */
function decodeBasic(header) {
  const m = /^Basic\s+(\S+)$/i.exec(header || '');
  if (!m) return null;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return null;
  const unform = (x) => decodeURIComponent(x.replace(/\+/g, ' '));
  return { rawId: text.slice(0, i), rawSecret: text.slice(i + 1), id: unform(text.slice(0, i)), secret: unform(text.slice(i + 1)) };
}

/**
 * The OAuth token endpoint at `/oauth/access_token`. Counts calls and records each one as
 * `{ method, url, headers, body, form, authMethod ('basic' | 'post' | 'none'), clientId,
 * clientSecret, basic, at, doneAt, status, token }` (`at`/`doneAt`: arrival and end of the
 * answer, epoch ms; `status` 0 for a dropped connection; `token`: the access token issued). Credentials are checked against `clientId`/`clientSecret`; wrong ones
 * get 401 invalid_client.
 *
 * Modes (`setMode`): 'ok' (expires_in as the string "28799", the documented shape), 'ok-number'
 * (expires_in as a number), 'slow' (answers ok after `delayMs`), '500', 'garbage' (200 with a
 * non-JSON body), 'no-access-token', 'invalid-client' (401 {"error":"invalid_client"}), 'down'
 * (the connection is dropped without an answer, as when the endpoint is unreachable).
 * `expiresIn` overrides the lifetime (seconds). `expiresAt` maps each issued token to the epoch
 * milliseconds at which it expires; `isLive(token)` says whether it has not expired yet.
 */
export async function startTokenEndpoint({ clientId = 'test-client', clientSecret = 'test-client-secret', mode = 'ok', delayMs = 0, expiresIn = 28799 } = {}) {
  const calls = [];
  const issued = [];
  const expiresAt = new Map();
  const opts = { mode, delayMs, expiresIn };

  const s = await listen(async (req, res) => {
    const at = Date.now();
    const raw = (await readBody(req)).toString('utf8');
    const form = Object.fromEntries(new URLSearchParams(raw));
    const basic = decodeBasic(req.headers.authorization);
    const authMethod = basic ? 'basic' : form.client_secret !== undefined ? 'post' : 'none';
    const rec = {
      method: req.method,
      url: req.url,
      headers: headerObject(req),
      body: raw,
      form,
      authMethod,
      basic,
      clientId: basic ? basic.id : form.client_id,
      clientSecret: basic ? basic.secret : form.client_secret,
      at,
    };
    calls.push(rec);
    stampAnswer(res, rec);
    const json = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(obj));
    };
    if (opts.mode === 'slow' || opts.delayMs > 0) await sleep(opts.delayMs);
    if (res.destroyed) return;
    switch (opts.mode) {
      case 'down':
        req.socket.destroy();
        return;
      case '500':
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><body>Service temporarily unavailable</body></html>');
        return;
      case 'invalid-client':
        json(401, { error: 'invalid_client' });
        return;
      default:
    }
    if (req.method !== 'POST') return json(405, { error: 'invalid_request' });
    if (rec.clientId !== clientId || rec.clientSecret !== clientSecret) return json(401, { error: 'invalid_client' });
    const token = `at-${calls.length}-${randomBytes(12).toString('hex')}`;
    issued.push(token);
    rec.token = token;
    const now = Date.now();
    expiresAt.set(token, now + Number(opts.expiresIn) * 1000);
    if (opts.mode === 'no-access-token') {
      return json(200, { token_type: 'Bearer', issued_at: String(now), expires_in: String(opts.expiresIn) });
    }
    json(200, {
      token_type: 'Bearer',
      issued_at: String(now),
      client_id: clientId,
      access_token: token,
      scope: 'client_credentials',
      expires_in: opts.mode === 'ok-number' ? opts.expiresIn : String(opts.expiresIn),
    });
  });

  return {
    url: `${s.url}/oauth/access_token`,
    baseUrl: s.url,
    calls,
    issued,
    get count() {
      return calls.length;
    },
    /** The most recently issued access token. */
    get token() {
      return issued[issued.length - 1];
    },
    expiresAt,
    /** `token` was issued here and has not expired at `atMs`. */
    isLive(token, atMs = Date.now()) {
      return expiresAt.has(token) && atMs < expiresAt.get(token);
    },
    setMode(mode, extra = {}) {
      Object.assign(opts, { mode }, extra);
    },
    reset() {
      calls.length = 0;
      issued.length = 0;
      expiresAt.clear();
      Object.assign(opts, { mode, delayMs, expiresIn });
    },
    close: s.close,
  };
}

// ---------------------------------------------------------------------------------------------
// the JWKS server

/**
 * Serves `jwks` at `/.well-known/jwks.json`, counting hits (`{ method, url, at, doneAt, status,
 * kids }`: `kids`, those of the set served, on a 200). `setKeys` replaces the set,
 * `setCacheControl` the `cache-control` it is served with.
 */
export async function startJwksServer(jwks, { cacheControl: initialCacheControl = 'max-age=300' } = {}) {
  let current = jwks;
  let cacheControl = initialCacheControl;
  let down = false;
  const hits = [];
  const s = await listen(async (req, res) => {
    await readBody(req);
    const hit = { method: req.method, url: req.url, at: Date.now() };
    hits.push(hit);
    stampAnswer(res, hit);
    if (req.url.split('?')[0] !== '/.well-known/jwks.json') {
      res.writeHead(404);
      res.end();
      return;
    }
    if (down) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('down for maintenance');
      return;
    }
    hit.kids = (current.keys ?? []).map((k) => k.kid);
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': cacheControl });
    res.end(JSON.stringify(current));
  });
  return {
    url: `${s.url}/.well-known/jwks.json`,
    hits,
    get count() {
      return hits.length;
    },
    setKeys(next) {
      current = next;
    },
    setCacheControl(value) {
      cacheControl = value;
    },
    /** While down, every fetch gets 503. */
    setDown(flag) {
      down = flag;
    },
    close: s.close,
  };
}

// ---------------------------------------------------------------------------------------------
// keys and JWTs

/** A signing key pair with its public JWK (kid, alg, use set). */
export async function makeKey(alg = 'RS256', kid = `${alg.toLowerCase()}-${randomBytes(4).toString('hex')}`) {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg.startsWith('RS') || alg.startsWith('PS') ? { modulusLength: 2048 } : {}) });
  const jwk = await exportJWK(publicKey);
  return { alg, kid, privateKey, publicKey, publicJwk: { ...jwk, kid, alg, use: 'sig' } };
}

export const jwks = (...keys) => ({ keys: keys.map((k) => k.publicJwk) });

export const nowSecs = () => Math.floor(Date.now() / 1000);

/**
 * A signed JWT. `claims` are merged over defaults (iss, aud, sub, iat, exp = now + 1 h);
 * a claim set to `undefined` is left out. `header` is merged over `{ alg, kid, typ }`.
 */
export async function signJwt(key, { claims = {}, header = {}, issuer = 'https://issuer.test/', audience = 'profile-api' } = {}) {
  const now = nowSecs();
  const payload = { iss: issuer, aud: audience, sub: 'cust-7f3a9c', iat: now, exp: now + 3600, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

/** An HS256 JWT signed with `secret` (bytes or string). */
export async function signHs256(secret, { claims = {}, header = {}, issuer = 'https://issuer.test/', audience = 'profile-api' } = {}) {
  const now = nowSecs();
  const payload = { iss: issuer, aud: audience, sub: 'cust-7f3a9c', iat: now, exp: now + 3600, ...claims };
  const bytes = typeof secret === 'string' ? new TextEncoder().encode(secret) : secret;
  return new SignJWT(payload).setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...header }).sign(bytes);
}

/** An unsecured JWT (`alg: none`, empty signature), as an attacker would send it. */
export function unsignedJwt({ claims = {}, header = {}, issuer = 'https://issuer.test/', audience = 'profile-api' } = {}) {
  const now = nowSecs();
  const payload = { iss: issuer, aud: audience, sub: 'cust-7f3a9c', iat: now, exp: now + 3600, ...claims };
  const enc = (o) => base64url.encode(JSON.stringify(o));
  return `${enc({ alg: 'none', typ: 'JWT', ...header })}.${enc(payload)}.`;
}
