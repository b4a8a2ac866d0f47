#!/usr/bin/env node
// The demo backend that edge-auth-proxy sits in front of in `npm run demo`: a small real HTTP
// server playing the company's API, with the shapes of the partner's integration document.
//
//   POST /oauth/access_token        client credentials (form body or HTTP Basic) -> access token
//   POST /auth/customer_authenticate username/password (form) -> customer JWT (RS256)
//   GET  /.well-known/jwks.json      the public half of the demo signing key
//   POST /account/getprofile         (and GET) checks Authorization, api-key and customer-auth
//   GET  /accounts/<id>/profile      the profile of the account the path names, whoever asks:
//                                    the gateway's `bind` keeps a customer to their own
//   POST /auth/session_login          username/password (form) -> Set-Cookie: demo_session=<id>
//   POST /oauth/introspect            RFC 7662 for those session ids, for the demo client only
//   POST /session/getprofile          (and GET) the profile for a cookie session, via the gateway
//
// The profile endpoints also check the gateway's assertion (x-gateway-assertion) with the
// reference's recipe (docs/recipes/gateway-assertion.mjs) against the gateway's own key set,
// and say so in the answer (`gateway_assertion`): a forged or replayed one is 401.
//
// Everything here is DEMO ONLY: the signing key in demo-key.private.jwk.json is committed to the
// repository, the users and the client secret are written below.
//
//   node demo/origin.mjs [--port 8788] [--host 127.0.0.1]

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { SignJWT, importJWK, jwtVerify, createLocalJWKSet } from 'jose';

import { gatewayAssertionChecker } from '../docs/recipes/gateway-assertion.mjs';

export const DEMO_CLIENT_ID = 'demo-client';
export const DEMO_CLIENT_SECRET = 'demo-client-secret';
export const DEMO_API_KEY = 'demo-api-key';
export const DEMO_AUDIENCE = 'profile-api';
export const DEMO_KID = 'demo-key-1';
/** The cookie the session login sets (the gateway's SESSION_COOKIE in demo/wrangler.toml). */
export const DEMO_SESSION_COOKIE = 'demo_session';
/** CUSTOMER_ID_KEY of the demo gateway: 32 bytes in base64, committed, so DEMO ONLY. */
export const DEMO_CUSTOMER_ID_KEY = 'ZGVtby1vbmx5LWN1c3RvbWVyLWlkLWtleS0zMmJ5dGU=';
/** Lifetime of a demo cookie session, in seconds. */
export const SESSION_LIFETIME_SECS = 3600;
/** Lifetime of access tokens and customer JWTs, in seconds (the documented example's). */
export const LIFETIME_SECS = 28799;

const USERS = {
  // `scope` goes into the customer JWT: the gateway's /account/rewards route requires
  // rewards:read, which alice has and bob lacks.
  alice: { password: 'alice-password', name: 'Alice Example', tier: 'gold', email: 'alice@example.com', scope: 'profile:read rewards:read' },
  bob: { password: 'bob-password', name: 'Bob Example', tier: 'silver', email: 'bob@example.com', scope: 'profile:read' },
};

const PRIVATE_JWK_PATH = fileURLToPath(new URL('./demo-key.private.jwk.json', import.meta.url));

/** The header of the gateway's assertion (GATEWAY_ASSERTION_HEADER in demo/wrangler.toml). */
export const DEMO_ASSERTION_HEADER = 'x-gateway-assertion';
/** The demo gateway's address, and its GATEWAY_ISSUER in demo/wrangler.toml. */
export const DEMO_GATEWAY = 'http://127.0.0.1:8787';
/** GATEWAY_SIGNING_KEY of the demo gateway (DEMO ONLY: committed), as the secret's text. */
export const DEMO_GATEWAY_SIGNING_KEY = (() => {
  const { _comment, ...jwk } = JSON.parse(readFileSync(fileURLToPath(new URL('./gateway-key.private.jwk.json', import.meta.url)), 'utf8'));
  return JSON.stringify(jwk);
})();

/** The demo key: the private JWK as committed, and its public half as a JWKS. */
export function demoKeys() {
  const { _comment, ...jwk } = JSON.parse(readFileSync(PRIVATE_JWK_PATH, 'utf8'));
  const publicJwk = { kty: jwk.kty, kid: jwk.kid, use: 'sig', alg: jwk.alg, n: jwk.n, e: jwk.e };
  return { privateJwk: jwk, jwks: { keys: [publicJwk] } };
}

/** The opaque customer identifier of a user: a salted hash, no PII (the partner's requirement). */
export function customerId(username) {
  return createHash('sha256').update(`edge-auth-proxy-demo:${username}`).digest('hex').slice(0, 32);
}

function sameSecret(a, b) {
  const x = Buffer.from(String(a));
  const y = Buffer.from(String(b));
  return x.length === y.length && timingSafeEqual(x, y);
}

function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

async function readBody(req, limit = 1024 * 1024) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > limit) throw Object.assign(new Error('body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Form fields of a request body (x-www-form-urlencoded, or JSON as a courtesy). */
function formFields(req, text) {
  const type = String(req.headers['content-type'] || '');
  if (type.includes('application/json')) {
    try {
      const obj = JSON.parse(text || '{}');
      return new URLSearchParams(Object.entries(obj).map(([k, v]) => [k, String(v)]));
    } catch {
      return new URLSearchParams();
    }
  }
  return new URLSearchParams(text);
}

/** RFC 6749 §2.3.1 HTTP Basic: id and secret are form-urlencoded before base64. */
function basicCredentials(header) {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header || '');
  if (!m) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  const unform = (s) => decodeURIComponent(s.replace(/\+/g, ' '));
  try {
    return { id: unform(decoded.slice(0, colon)), secret: unform(decoded.slice(colon + 1)) };
  } catch {
    return null;
  }
}

/**
 * Starts the demo origin. `issuer` defaults to `http://<host>:<port>/` with the port asked for
 * (the gateway's demo settings expect http://127.0.0.1:8788/).
 */
export async function startDemoOrigin({ port = 8788, host = '127.0.0.1', issuer, gateway = DEMO_GATEWAY, log = false } = {}) {
  const { privateJwk, jwks } = demoKeys();
  const signingKey = await importJWK(privateJwk, 'RS256');
  const keySet = createLocalJWKSet(jwks);
  /** access token -> expiry (epoch ms) */
  const accessTokens = new Map();
  /** session id -> { username, exp (epoch s), iat } */
  const sessions = new Map();
  let iss = issuer;
  /** This origin's own base URL (the assertion's audience), once it listens. */
  let url;

  const say = (line) => {
    if (log) process.stdout.write(`[demo origin] ${line}\n`);
  };

  async function accessToken(req, res, url) {
    const form = formFields(req, await readBody(req));
    const basic = basicCredentials(req.headers.authorization);
    const id = basic ? basic.id : form.get('client_id');
    const secret = basic ? basic.secret : form.get('client_secret');
    const grant = form.get('grant_type') ?? url.searchParams.get('grant_type');
    if (grant !== 'client_credentials') {
      return sendJson(res, 400, { error: 'unsupported_grant_type' });
    }
    if (id !== DEMO_CLIENT_ID || !sameSecret(secret ?? '', DEMO_CLIENT_SECRET)) {
      return sendJson(res, 401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="demo"' });
    }
    const issuedAt = Date.now();
    const token = randomBytes(24).toString('base64url');
    accessTokens.set(token, issuedAt + LIFETIME_SECS * 1000);
    return sendJson(res, 200, {
      token_type: 'Bearer',
      issued_at: String(issuedAt),
      client_id: DEMO_CLIENT_ID,
      access_token: token,
      scope: 'client_credentials',
      expires_in: String(LIFETIME_SECS),
    });
  }

  async function customerAuthenticate(req, res) {
    const form = formFields(req, await readBody(req));
    const username = form.get('username') ?? '';
    const user = Object.hasOwn(USERS, username) ? USERS[username] : null;
    if (!user || !sameSecret(form.get('password') ?? '', user.password)) {
      return sendJson(res, 401, { error: 'invalid_credentials', message: 'Unknown user or wrong password.' });
    }
    const issuedAt = Date.now();
    const jwt = await new SignJWT({ scope: user.scope })
      .setProtectedHeader({ alg: 'RS256', kid: DEMO_KID, typ: 'JWT' })
      .setIssuer(iss)
      .setAudience(DEMO_AUDIENCE)
      .setSubject(customerId(username))
      .setIssuedAt(Math.floor(issuedAt / 1000))
      .setExpirationTime(Math.floor(issuedAt / 1000) + LIFETIME_SECS)
      .sign(signingKey);
    return sendJson(res, 200, { issued_at: String(issuedAt), JWT: jwt, expires_in: String(LIFETIME_SECS) });
  }

  /** The access token of an `Authorization: Bearer` we issued and that has not expired. */
  function liveAccessToken(req) {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization || '');
    const expiry = bearer ? accessTokens.get(bearer[1]) : undefined;
    return bearer && expiry !== undefined && expiry > Date.now();
  }

  // The gateway's assertion: checked when present (a request sent around the gateway has
  // none, and the other checks still hold); what was checked goes back in the answer.
  let keysFrom = gateway;
  let checker;
  async function gatewayAssertion(req) {
    if (req.headers[DEMO_ASSERTION_HEADER] === undefined) return { ok: true, shown: 'absent' };
    checker ??= gatewayAssertionChecker({
      jwksUrl: `${keysFrom}/.well-known/edge-auth-proxy/jwks.json`,
      issuer: gateway,
      audience: url,
      header: DEMO_ASSERTION_HEADER,
    });
    try {
      const claims = await checker(req);
      say(`gateway assertion verified: ${claims.htm} ${claims.htu} rid=${claims.rid} jti=${claims.jti}`);
      return { ok: true, shown: { verified: true, rid: claims.rid, jti: claims.jti, htm: claims.htm, htu: claims.htu, sub: claims.sub ?? null } };
    } catch (err) {
      say(`gateway assertion refused: ${err.message}`);
      return { ok: false };
    }
  }
  const refuseAssertion = (res) =>
    sendJson(res, 401, { error: 'invalid_gateway_assertion', header: DEMO_ASSERTION_HEADER, message: 'The gateway assertion does not verify for this request.' });

  function profileOf(username, extra = {}) {
    const sub = customerId(username);
    const { name, tier, email } = USERS[username];
    return { customer_id: sub, name, email, tier, accounts: [{ id: `acct-${sub.slice(0, 8)}`, status: 'active' }], ...extra };
  }

  /** The live session of `sid`, or undefined. */
  function liveSession(sid) {
    const s = sid ? sessions.get(sid) : undefined;
    if (s && s.exp > Date.now() / 1000) return s;
    if (s) sessions.delete(sid);
    return undefined;
  }

  // A server-side session, as the partner document describes: credentials posted to the
  // company's server, which stores the session and hands the browser a cookie.
  async function sessionLogin(req, res) {
    const form = formFields(req, await readBody(req));
    const username = form.get('username') ?? '';
    const user = Object.hasOwn(USERS, username) ? USERS[username] : null;
    if (!user || !sameSecret(form.get('password') ?? '', user.password)) {
      return sendJson(res, 401, { error: 'invalid_credentials', message: 'Unknown user or wrong password.' });
    }
    const sid = randomBytes(24).toString('base64url');
    const iat = Math.floor(Date.now() / 1000);
    sessions.set(sid, { username, iat, exp: iat + SESSION_LIFETIME_SECS });
    return sendJson(
      res,
      200,
      { session: 'cookie', expires_in: String(SESSION_LIFETIME_SECS) },
      { 'set-cookie': `${DEMO_SESSION_COOKIE}=${sid}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${SESSION_LIFETIME_SECS}` },
    );
  }

  // RFC 7662: only the demo client may ask, authenticated as at the token endpoint.
  async function introspect(req, res) {
    const form = formFields(req, await readBody(req));
    const basic = basicCredentials(req.headers.authorization);
    const id = basic ? basic.id : form.get('client_id');
    const secret = basic ? basic.secret : form.get('client_secret');
    if (id !== DEMO_CLIENT_ID || !sameSecret(secret ?? '', DEMO_CLIENT_SECRET)) {
      return sendJson(res, 401, { error: 'invalid_client' }, { 'www-authenticate': 'Basic realm="demo"' });
    }
    const session = liveSession(form.get('token'));
    if (!session) return sendJson(res, 200, { active: false });
    return sendJson(res, 200, {
      active: true,
      iss,
      sub: customerId(session.username),
      exp: session.exp,
      iat: session.iat,
      scope: 'profile:read',
      client_id: 'demo-web',
      token_type: 'session',
    });
  }

  // The profile for a cookie session: the gateway has vouched for it (introspection), and
  // sends it as `customer-auth: Cookie <id>` with the cookie itself.
  async function sessionProfile(req, res) {
    await readBody(req);
    if (!liveAccessToken(req)) {
      return sendJson(res, 401, { error: 'invalid_access_token', header: 'authorization', message: 'Authorization: Bearer <access_token> is required.' });
    }
    if (!sameSecret(req.headers['api-key'] ?? '', DEMO_API_KEY)) {
      return sendJson(res, 403, { error: 'invalid_api_key', header: 'api-key', message: 'The api-key is missing or not valid.' });
    }
    const assertion = await gatewayAssertion(req);
    if (!assertion.ok) return refuseAssertion(res);
    const sid = /^\S+\s+(\S+)\s*$/.exec(req.headers['customer-auth'] || '')?.[1];
    const session = liveSession(sid);
    if (!session) {
      return sendJson(res, 401, { error: 'invalid_session', header: 'customer-auth', message: 'customer-auth: <scheme> <session id> of a live session is required.' });
    }
    return sendJson(res, 200, profileOf(session.username, { gateway_customer_id: req.headers['x-customer-id'] ?? null, gateway_assertion: assertion.shown }));
  }

  /** `/account/rewards`: what a customer with the rewards:read scope may see. */
  const rewardsOf = (username) => ({ customer_id: customerId(username), tier: USERS[username].tier, points: USERS[username].tier === 'gold' ? 1200 : 300 });

  async function getProfile(req, res, view = (username) => profileOf(username, { gateway_customer_id: req.headers['x-customer-id'] ?? null })) {
    await readBody(req);
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization || '');
    const expiry = bearer ? accessTokens.get(bearer[1]) : undefined;
    if (!bearer || expiry === undefined || expiry <= Date.now()) {
      // RFC 6750 §3.1, as the gateway's ORIGIN_TOKEN_REFUSAL=invalid_token expects: a refused
      // access token says so; a wrong password (above) does not.
      const challenge = bearer ? 'Bearer realm="demo", error="invalid_token"' : 'Bearer realm="demo"';
      return sendJson(
        res,
        401,
        {
          error: 'invalid_access_token',
          header: 'authorization',
          message: bearer ? 'The access token is unknown or expired.' : 'Authorization: Bearer <access_token> is required.',
        },
        { 'www-authenticate': challenge },
      );
    }
    if (!sameSecret(req.headers['api-key'] ?? '', DEMO_API_KEY)) {
      return sendJson(res, 403, {
        error: 'invalid_api_key',
        header: 'api-key',
        message: req.headers['api-key'] ? 'The api-key is not valid.' : 'api-key is required.',
      });
    }
    const assertion = await gatewayAssertion(req);
    if (!assertion.ok) return refuseAssertion(res);
    const customer = /^JWT\s+(\S+)\s*$/i.exec(req.headers['customer-auth'] || '');
    if (!customer) {
      return sendJson(res, 401, {
        error: 'invalid_customer_jwt',
        header: 'customer-auth',
        message: 'customer-auth: JWT <jwt> is required.',
      });
    }
    let sub;
    try {
      const { payload } = await jwtVerify(customer[1], keySet, {
        algorithms: ['RS256'],
        issuer: iss,
        audience: DEMO_AUDIENCE,
      });
      sub = payload.sub;
    } catch {
      return sendJson(res, 401, {
        error: 'invalid_customer_jwt',
        header: 'customer-auth',
        message: 'The customer JWT does not verify.',
      });
    }
    const username = Object.keys(USERS).find((u) => customerId(u) === sub);
    if (!username) {
      return sendJson(res, 404, { error: 'unknown_customer', message: 'No profile for this customer.' });
    }
    return sendJson(res, 200, { ...view(username), gateway_assertion: assertion.shown });
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://origin.invalid');
    res.on('finish', () => say(`${req.method} ${url.pathname} -> ${res.statusCode}`));
    try {
      if (url.pathname === '/oauth/access_token' && req.method === 'POST') return await accessToken(req, res, url);
      if (url.pathname === '/auth/customer_authenticate' && req.method === 'POST') return await customerAuthenticate(req, res);
      if (url.pathname === '/.well-known/jwks.json' && (req.method === 'GET' || req.method === 'HEAD')) {
        return sendJson(res, 200, jwks, { 'cache-control': 'public, max-age=300' });
      }
      if (url.pathname === '/account/getprofile' && (req.method === 'POST' || req.method === 'GET')) {
        return await getProfile(req, res);
      }
      if (url.pathname === '/account/rewards' && (req.method === 'POST' || req.method === 'GET')) {
        return await getProfile(req, res, rewardsOf);
      }
      const account = /^\/accounts\/([^/]+)\/profile$/.exec(url.pathname);
      if (account && req.method === 'GET') {
        // Like many origins, this one serves the account the path names to any verified
        // customer: object-level authorization is left to the gateway's `bind`.
        const owner = Object.keys(USERS).find((u) => customerId(u) === account[1]);
        if (!owner) return sendJson(res, 404, { error: 'unknown_account', message: 'No such account.' });
        return await getProfile(req, res, () => profileOf(owner));
      }
      if (url.pathname === '/auth/session_login' && req.method === 'POST') return await sessionLogin(req, res);
      if (url.pathname === '/oauth/introspect' && req.method === 'POST') return await introspect(req, res);
      if (url.pathname === '/session/getprofile' && (req.method === 'POST' || req.method === 'GET')) {
        return await sessionProfile(req, res);
      }
      const known = [
        '/oauth/access_token',
        '/auth/customer_authenticate',
        '/.well-known/jwks.json',
        '/account/getprofile',
        '/account/rewards',
        '/auth/session_login',
        '/oauth/introspect',
        '/session/getprofile',
      ];
      if (known.includes(url.pathname)) return sendJson(res, 405, { error: 'method_not_allowed' });
      return sendJson(res, 404, { error: 'not_found' });
    } catch (err) {
      if (!res.headersSent) sendJson(res, err.status ?? 500, { error: err.status ? 'bad_request' : 'server_error' });
      else res.destroy();
    }
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const actual = server.address().port;
  url = `http://${host}:${actual}`;
  iss ??= `${url}/`;
  return {
    url,
    issuer: iss,
    /** Where the gateway's key set is read (its issuer stays `gateway`): a test's port. */
    useGatewayKeysFrom(base) {
      keysFrom = base;
      checker = undefined;
    },
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections?.();
      }),
  };
}

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const value = () => inline ?? argv[++i];
    if (flag === '--port') opts.port = Number(value());
    else if (flag === '--host') opts.host = value();
    else if (flag === '--issuer') opts.issuer = value();
    else if (flag === '--help' || flag === '-h') {
      process.stdout.write('usage: node demo/origin.mjs [--port 8788] [--host 127.0.0.1] [--issuer URL]\n');
      process.exit(0);
    } else {
      process.stderr.write(`unknown argument: ${argv[i]}\n`);
      process.exit(2);
    }
  }
  if (opts.port !== undefined && !(Number.isInteger(opts.port) && opts.port >= 0 && opts.port < 65536)) {
    process.stderr.write('--port must be a number from 0 to 65535\n');
    process.exit(2);
  }
  return opts;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const origin = await startDemoOrigin({ ...parseArgs(process.argv.slice(2)), log: true });
  process.stdout.write(`demo origin listening on ${origin.url} (issuer ${origin.issuer})\n`);
  const stop = () => origin.close().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
