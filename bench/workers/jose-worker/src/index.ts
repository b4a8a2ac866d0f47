// The reference Worker for the benchmark: the job edge-auth-proxy does, written the way a
// competent TypeScript user would write it with `jose`. Same settings (the ones the benchmark
// uses, named as in CONTRACT.md), same headers to the origin, same statuses, problem+json errors
// and one JSON log line per request.
//
// - Keys: `createLocalJWKSet` (inline JWT_JWKS) or `createRemoteJWKSet` (JWKS_URL), built once
//   per isolate; jose caches each imported CryptoKey, and WebCrypto does the signature check.
// - Access token: module variable, then KV, then the token endpoint; one fill at a time per
//   isolate, refreshed ahead of expiry in the background, a short back-off after failures.
// - Verified-token cache: off by default. Most jose users do not write one (jwtVerify on every
//   request is the documented pattern, and a cache keyed by the token means holding tokens in
//   memory and reasoning about expiry); VERIFIED_CACHE=on turns on the bounded cache a careful
//   user might add, so the benchmark can show what it buys.
//
// Not type-checked here (no @cloudflare/workers-types in this repository): wrangler's esbuild
// strips the types, and the few Workers types used are declared below.

import { createLocalJWKSet, createRemoteJWKSet, errors, jwtVerify } from 'jose';
import type { JWTPayload, JWTVerifyGetKey, JWTVerifyOptions, ProtectedHeaderParameters } from 'jose';

interface KVNamespace {
  get(key: string, type: 'json'): Promise<unknown>;
  put(key: string, value: string, options?: { expirationTtl?: number }): Promise<void>;
}
interface ExecutionContext {
  waitUntil(promise: Promise<unknown>): void;
}

export interface Env {
  ORIGIN_URL?: string;
  TOKEN_URL?: string;
  CLIENT_ID?: string;
  CLIENT_SECRET?: string;
  API_KEY?: string;
  TOKEN_CLIENT_AUTH?: string;
  TOKEN_SCOPE?: string;
  JWT_ALGORITHMS?: string;
  JWT_JWKS?: string;
  JWKS_URL?: string;
  JWT_ISSUER?: string;
  JWT_AUDIENCE?: string;
  JWT_LEEWAY_SECONDS?: string;
  JWT_MAX_AGE_SECONDS?: string;
  JWT_COOKIE?: string;
  ORIGIN_TIMEOUT_MS?: string;
  TOKEN_TIMEOUT_MS?: string;
  VERIFIED_CACHE?: string;
  TOKEN_CACHE?: KVNamespace;
}

const REALM = 'edge-auth-proxy';
const MAX_TOKEN_BYTES = 8 * 1024;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const SUPPORTED_ALGS = new Set(['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'EdDSA']);
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
const REQUEST_ID = /^[A-Za-z0-9\-_.:/+=]{1,128}$/;
/** A token is not used within this many ms of its expiry, and is refreshed ahead of it. */
const TOKEN_MARGIN_MS = 60_000;
const TOKEN_REFRESH_AHEAD_MS = 300_000;
const TOKEN_DEFAULT_LIFETIME_S = 300;
const TOKEN_BACKOFF_MS = 5_000;
const VERIFIED_CACHE_MAX = 10_000;

// ---------------------------------------------------------------------------------------------
// configuration, checked once per isolate

class ConfigError extends Error {
  constructor(readonly setting: string, readonly problem: string) {
    super(`${setting} ${problem}`);
  }
}

interface Config {
  origin: string;
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  apiKey: string;
  basicAuth: boolean;
  scope?: string;
  getKey: JWTVerifyGetKey;
  verify: JWTVerifyOptions;
  cookie?: string;
  originTimeoutMs: number;
  tokenTimeoutMs: number;
  verifiedCache: boolean;
  kvKey: string;
}

function required(env: Env, name: keyof Env): string {
  const v = env[name];
  if (typeof v !== 'string' || v.trim() === '') throw new ConfigError(name, 'is required');
  return v.trim();
}

function optional(env: Env, name: keyof Env): string | undefined {
  const v = env[name];
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

function httpUrl(name: string, raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(name, 'must be an http(s) URL');
  return url;
}

function seconds(env: Env, name: keyof Env, fallback?: number): number | undefined {
  const raw = optional(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d{1,9}$/.test(raw)) throw new ConfigError(name, 'must be a whole number');
  return Number(raw);
}

async function loadConfig(env: Env): Promise<Config> {
  if (!env.TOKEN_CACHE) throw new ConfigError('TOKEN_CACHE', 'KV namespace binding is missing');
  const origin = httpUrl('ORIGIN_URL', required(env, 'ORIGIN_URL')).href.replace(/\/+$/, '');
  const tokenUrl = httpUrl('TOKEN_URL', required(env, 'TOKEN_URL')).href;
  const clientId = required(env, 'CLIENT_ID');
  const clientSecret = required(env, 'CLIENT_SECRET');
  const apiKey = required(env, 'API_KEY');
  const clientAuth = optional(env, 'TOKEN_CLIENT_AUTH') ?? 'client_secret_post';
  if (clientAuth !== 'client_secret_post' && clientAuth !== 'client_secret_basic') {
    throw new ConfigError('TOKEN_CLIENT_AUTH', 'must be client_secret_post or client_secret_basic');
  }
  const scope = optional(env, 'TOKEN_SCOPE');

  const algorithms = required(env, 'JWT_ALGORITHMS').split(',').map((a) => a.trim()).filter(Boolean);
  for (const alg of algorithms) {
    if (!SUPPORTED_ALGS.has(alg)) throw new ConfigError('JWT_ALGORITHMS', `lists an unsupported algorithm`);
  }
  const jwksJson = optional(env, 'JWT_JWKS');
  const jwksUrl = optional(env, 'JWKS_URL');
  let jwks: JWTVerifyGetKey | undefined;
  if (jwksJson !== undefined) {
    try {
      jwks = createLocalJWKSet(JSON.parse(jwksJson));
    } catch {
      throw new ConfigError('JWT_JWKS', 'is not a JSON Web Key Set');
    }
  } else if (jwksUrl !== undefined) {
    // jose keeps the fetched set in memory, refetches at most once per cooldown for an unknown kid.
    jwks = createRemoteJWKSet(httpUrl('JWKS_URL', jwksUrl), { cooldownDuration: 10_000, cacheMaxAge: 600_000, timeoutDuration: 5_000 });
  }
  if (!jwks) throw new ConfigError('JWT_JWKS', 'is required unless JWKS_URL is set: one key source is needed');
  // RFC 8725 §3.1: asymmetric keys only; this Worker does not offer HS* (no JWT_HMAC_SECRET).
  const getKey = jwks;

  const issuer = optional(env, 'JWT_ISSUER');
  const audience = optional(env, 'JWT_AUDIENCE')?.split(',').map((a) => a.trim()).filter(Boolean);
  const maxAge = seconds(env, 'JWT_MAX_AGE_SECONDS');
  const verify: JWTVerifyOptions = {
    algorithms,
    issuer,
    audience,
    clockTolerance: seconds(env, 'JWT_LEEWAY_SECONDS', 60),
    maxTokenAge: maxAge,
    requiredClaims: ['exp'],
  };

  // The KV key names the settings that make the token, never the secret.
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(`${tokenUrl}\n${clientId}\n${scope ?? ''}`));
  const kvKey = `access-token:v1:${[...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')}`;

  return {
    origin,
    tokenUrl,
    clientId,
    clientSecret,
    apiKey,
    basicAuth: clientAuth === 'client_secret_basic',
    scope,
    getKey,
    verify,
    cookie: optional(env, 'JWT_COOKIE'),
    originTimeoutMs: seconds(env, 'ORIGIN_TIMEOUT_MS', 30_000)!,
    tokenTimeoutMs: seconds(env, 'TOKEN_TIMEOUT_MS', 5_000)!,
    verifiedCache: optional(env, 'VERIFIED_CACHE') === 'on',
    kvKey,
  };
}

let configPromise: Promise<Config> | undefined;

// ---------------------------------------------------------------------------------------------
// problem+json

class Problem extends Error {
  constructor(
    readonly status: number,
    readonly slug: string,
    readonly title: string,
    readonly detail: string,
    readonly outcome: string,
    readonly extraHeaders: Record<string, string> = {},
  ) {
    super(detail);
  }
}

const invalidToken = (description: string, outcome: string) =>
  new Problem(401, 'invalid-token', 'Invalid token', `${description}.`, outcome, {
    'www-authenticate': `Bearer realm="${REALM}", error="invalid_token", error_description="${description}"`,
  });

function problemResponse(p: Problem, requestId: string): Response {
  const body = JSON.stringify({ type: `urn:edge-auth-proxy:problem:${p.slug}`, title: p.title, status: p.status, detail: p.detail, request_id: requestId });
  return new Response(body, {
    status: p.status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', 'x-request-id': requestId, ...p.extraHeaders },
  });
}

// ---------------------------------------------------------------------------------------------
// the customer JWT

function credentials(value: string): [string, string | undefined] {
  const m = /^(\S+)(?:\s+(\S+))?\s*$/.exec(value.trim());
  return m ? [m[1].toLowerCase(), m[2]] : ['', undefined];
}

function findJwt(headers: Headers, cookieName?: string): string | undefined {
  const customer = headers.get('customer-auth');
  if (customer !== null) {
    const [scheme, token] = credentials(customer);
    if (scheme !== 'jwt' || !token || customer.includes(',')) {
      throw new Problem(400, 'invalid-request', 'Invalid request', 'The customer-auth header is malformed.', 'malformed_auth_header', {
        'www-authenticate': `Bearer realm="${REALM}", error="invalid_request"`,
      });
    }
    return token;
  }
  const authorization = headers.get('authorization');
  if (authorization !== null) {
    const [scheme, token] = credentials(authorization);
    if (scheme === 'bearer') {
      if (!token || authorization.includes(',')) {
        throw new Problem(400, 'invalid-request', 'Invalid request', 'The Authorization header is malformed.', 'malformed_auth_header', {
          'www-authenticate': `Bearer realm="${REALM}", error="invalid_request"`,
        });
      }
      return token;
    }
  }
  if (cookieName) {
    for (const part of (headers.get('cookie') ?? '').split(';')) {
      const i = part.indexOf('=');
      if (i > 0 && part.slice(0, i).trim() === cookieName) {
        const v = part.slice(i + 1).trim().replace(/^"(.*)"$/, '$1');
        if (v) return v;
      }
    }
  }
  return undefined;
}

/** jose's error codes, as the contract's invalid_token descriptions and log outcomes. */
function jwtFailure(err: unknown): Problem {
  if (err instanceof errors.JWTExpired) return invalidToken('The token has expired', 'token_expired');
  if (err instanceof errors.JWTClaimValidationFailed) {
    switch (err.claim) {
      case 'iss':
        return invalidToken('The token has the wrong issuer', 'wrong_issuer');
      case 'aud':
        return invalidToken('The token has the wrong audience', 'wrong_audience');
      case 'nbf':
        return invalidToken('The token is not yet valid', 'token_not_yet_valid');
      case 'iat':
        return invalidToken(err.reason === 'check_failed' ? 'The token is too old' : 'The token has an invalid iat', 'invalid_claim');
      default:
        return invalidToken(`The token's ${err.claim} claim is missing or invalid`, 'invalid_claim');
    }
  }
  if (err instanceof errors.JWSSignatureVerificationFailed) return invalidToken('The token signature is invalid', 'bad_signature');
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return invalidToken('The token algorithm is not allowed', 'alg_not_allowed');
  if (err instanceof errors.JWKSNoMatchingKey) return invalidToken('No key matches the token', 'unknown_kid');
  if (err instanceof errors.JWKSTimeout || (err instanceof Error && !(err instanceof errors.JOSEError))) {
    // The key set could not be fetched: not the caller's fault.
    return new Problem(503, 'keys-unavailable', 'Service unavailable', 'The gateway could not obtain the verification keys; retry later.', 'jwks_unavailable', { 'retry-after': '10' });
  }
  return invalidToken('The token is malformed', 'malformed_token');
}

/** token → expiry (ms); only with VERIFIED_CACHE=on. Insertion-ordered, oldest evicted first. */
const verified = new Map<string, { exp: number; header: ProtectedHeaderParameters; payload: JWTPayload }>();

async function verifyJwt(token: string, cfg: Config): Promise<{ header: ProtectedHeaderParameters; payload: JWTPayload }> {
  // Cheap checks before any crypto: an unauthenticated caller chooses what we decode.
  if (token.length > MAX_TOKEN_BYTES) throw invalidToken('The token is too large', 'token_too_large');
  if (!JWT_SHAPE.test(token)) throw invalidToken('The token is malformed', 'malformed_token');
  const now = Date.now();
  if (cfg.verifiedCache) {
    const hit = verified.get(token);
    if (hit && hit.exp > now) return hit;
    if (hit) verified.delete(token);
  }
  let result;
  try {
    result = await jwtVerify(token, cfg.getKey, cfg.verify);
  } catch (err) {
    throw jwtFailure(err);
  }
  if (cfg.verifiedCache) {
    // Kept until exp (leeway not added: the next check is a full one), at most 5 minutes.
    const exp = Math.min((result.payload.exp ?? 0) * 1000, now + 300_000);
    if (verified.size >= VERIFIED_CACHE_MAX) verified.delete(verified.keys().next().value!);
    verified.set(token, { exp, header: result.protectedHeader, payload: result.payload });
  }
  return { header: result.protectedHeader, payload: result.payload };
}

// ---------------------------------------------------------------------------------------------
// the access token: module variable, then KV, then the token endpoint

interface AccessToken {
  token: string;
  expiresAt: number;
}

let memoToken: AccessToken | undefined;
let filling: Promise<AccessToken> | undefined;
let failedUntil = 0;

const usable = (t: AccessToken | undefined, now: number): t is AccessToken => !!t && now < t.expiresAt - TOKEN_MARGIN_MS;

async function requestToken(cfg: Config): Promise<AccessToken> {
  const form = new URLSearchParams({ grant_type: 'client_credentials' });
  if (cfg.scope) form.set('scope', cfg.scope);
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  if (cfg.basicAuth) {
    // RFC 6749 §2.3.1: form-urlencode id and secret, then base64.
    const enc = (s: string) => new URLSearchParams({ s }).toString().slice(2);
    headers.authorization = `Basic ${btoa(`${enc(cfg.clientId)}:${enc(cfg.clientSecret)}`)}`;
  } else {
    form.set('client_id', cfg.clientId);
    form.set('client_secret', cfg.clientSecret);
  }
  const res = await fetch(cfg.tokenUrl, { method: 'POST', headers, body: form, signal: AbortSignal.timeout(cfg.tokenTimeoutMs) });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  const body = (await res.json()) as Record<string, unknown>;
  const token = body.access_token;
  if (typeof token !== 'string' || token === '') throw new Error('token endpoint sent no access_token');
  if (typeof body.token_type === 'string' && body.token_type.toLowerCase() !== 'bearer') throw new Error('token endpoint sent a token that is not Bearer');
  const lifetime = Number(body.expires_in ?? TOKEN_DEFAULT_LIFETIME_S);
  const issuedAt = Number(body.issued_at);
  const start = Number.isFinite(issuedAt) && issuedAt > 0 && Math.abs(issuedAt - Date.now()) < 300_000 ? issuedAt : Date.now();
  const expiresAt = start + (Number.isFinite(lifetime) && lifetime > 0 ? lifetime : TOKEN_DEFAULT_LIFETIME_S) * 1000;
  return { token, expiresAt };
}

async function fillToken(cfg: Config, env: Env, ctx: ExecutionContext, skipKv: boolean): Promise<AccessToken> {
  if (!skipKv) {
    const stored = (await env.TOKEN_CACHE!.get(cfg.kvKey, 'json').catch(() => null)) as AccessToken | null;
    if (stored && typeof stored.token === 'string' && usable(stored, Date.now())) return stored;
  }
  const fresh = await requestToken(cfg);
  const ttl = Math.max(60, Math.floor((fresh.expiresAt - TOKEN_MARGIN_MS - Date.now()) / 1000));
  ctx.waitUntil(env.TOKEN_CACHE!.put(cfg.kvKey, JSON.stringify(fresh), { expirationTtl: ttl }).catch(() => {}));
  return fresh;
}

/** One fill at a time per isolate; concurrent requests wait on it. */
function startFill(cfg: Config, env: Env, ctx: ExecutionContext, skipKv = false): Promise<AccessToken> {
  filling ??= fillToken(cfg, env, ctx, skipKv)
    .then((t) => {
      memoToken = t;
      failedUntil = 0;
      return t;
    })
    .catch((err) => {
      failedUntil = Date.now() + TOKEN_BACKOFF_MS;
      throw err;
    })
    .finally(() => {
      filling = undefined;
    });
  return filling;
}

async function accessToken(cfg: Config, env: Env, ctx: ExecutionContext): Promise<[AccessToken, string]> {
  const now = Date.now();
  if (usable(memoToken, now)) {
    if (now > memoToken.expiresAt - TOKEN_REFRESH_AHEAD_MS && !filling && now >= failedUntil) {
      ctx.waitUntil(startFill(cfg, env, ctx, true).catch(() => {}));
    }
    return [memoToken, 'memory'];
  }
  const unavailable = () =>
    new Problem(503, 'upstream-credentials', 'Service unavailable', 'The gateway could not obtain credentials for the origin; retry later.', 'token_unavailable', {
      'retry-after': String(Math.max(1, Math.ceil((failedUntil - Date.now()) / 1000)) || 5),
    });
  if (now < failedUntil && !filling) throw unavailable();
  try {
    return [await startFill(cfg, env, ctx), 'endpoint'];
  } catch {
    throw unavailable();
  }
}

// ---------------------------------------------------------------------------------------------
// the request

/** A copy of `from` without hop-by-hop fields, including every field `Connection` names. */
function endToEnd(from: Headers): Headers {
  const headers = new Headers(from);
  for (const name of (from.get('connection') ?? '').split(',')) {
    try {
      if (name.trim()) headers.delete(name.trim());
    } catch {
      /* not a header name: nothing to remove */
    }
  }
  for (const name of HOP_BY_HOP) headers.delete(name);
  return headers;
}

function upstreamHeaders(from: Headers, jwt: string, access: string, apiKey: string, requestId: string): Headers {
  const headers = endToEnd(from);
  headers.delete('host');
  headers.set('authorization', `Bearer ${access}`);
  headers.set('customer-auth', `JWT ${jwt}`);
  headers.set('api-key', apiKey);
  headers.set('x-request-id', requestId);
  return headers;
}

async function forward(url: string, init: RequestInit, timeoutMs: number): Promise<Response> {
  // The deadline covers the response head; the body may stream for longer.
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    return await fetch(url, { ...init, redirect: 'manual', signal: controller.signal });
  } catch (err) {
    if (controller.signal.aborted) throw new Problem(504, 'origin-timeout', 'Gateway timeout', 'The origin did not answer in time.', 'origin_timeout');
    throw new Problem(502, 'origin-unreachable', 'Bad gateway', 'The origin could not be reached.', 'origin_unreachable');
  } finally {
    clearTimeout(timer);
  }
}

export default {
  async fetch(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
    const started = Date.now();
    const incomingId = request.headers.get('x-request-id')?.trim();
    const requestId = incomingId && REQUEST_ID.test(incomingId) ? incomingId : crypto.randomUUID().replaceAll('-', '');
    const url = new URL(request.url);
    const log: Record<string, unknown> = { request_id: requestId, method: request.method, path: url.pathname.slice(0, 128) };
    let response: Response;
    try {
      let cfg: Config;
      try {
        cfg = await (configPromise ??= loadConfig(env));
      } catch (err) {
        configPromise = undefined;
        const setting = err instanceof ConfigError ? err.setting : 'configuration';
        const problem = err instanceof ConfigError ? err.problem : 'could not be read';
        throw new Problem(500, 'configuration', 'Gateway configuration error', `The gateway is misconfigured: setting ${setting} ${problem}.`, 'config_error');
      }

      const jwt = findJwt(request.headers, cfg.cookie);
      if (jwt === undefined) {
        throw new Problem(401, 'missing-token', 'Authentication required', 'A customer JWT is required: send customer-auth: JWT <token> or Authorization: Bearer <token>.', 'missing_token', {
          'www-authenticate': `Bearer realm="${REALM}"`,
        });
      }
      const { header, payload } = await verifyJwt(jwt, cfg);
      log.kid = header.kid?.slice(0, 128);
      log.iss = payload.iss?.slice(0, 128);

      const tokenStarted = Date.now();
      let [access, source] = await accessToken(cfg, env, ctx);
      log.token_source = source;
      log.token_ms = Date.now() - tokenStarted;

      const target = cfg.origin + url.pathname + url.search;
      const originStarted = Date.now();
      const init = (t: AccessToken): RequestInit => ({
        method: request.method,
        headers: upstreamHeaders(request.headers, jwt, t.token, cfg.apiKey, requestId),
        body: request.body,
      });
      let upstream = await forward(target, init(access), cfg.originTimeoutMs);
      if (upstream.status === 401) {
        // The origin no longer accepts the token: drop it, fetch a new one, replay bodiless requests once.
        if (memoToken?.token === access.token) memoToken = undefined;
        if (request.body === null) {
          try {
            access = await startFill(cfg, env, ctx, true);
            upstream = await forward(target, init(access), cfg.originTimeoutMs);
          } catch {
            /* keep the origin's 401 */
          }
        }
      }
      log.origin_ms = Date.now() - originStarted;

      const headers = endToEnd(upstream.headers);
      headers.set('x-request-id', requestId);
      response = new Response(upstream.body, { status: upstream.status, statusText: upstream.statusText, headers });
      log.outcome = 'forwarded';
    } catch (err) {
      const p = err instanceof Problem ? err : new Problem(500, 'internal', 'Internal error', 'The gateway failed unexpectedly.', 'internal_error');
      log.outcome = p.outcome;
      response = problemResponse(p, requestId);
    }
    log.status = response.status;
    log.total_ms = Date.now() - started;
    console.log(JSON.stringify(log));
    return response;
  },
};
