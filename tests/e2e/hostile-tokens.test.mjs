// Hostile customer JWTs against the built Worker: each one gets 401 invalid_token (or 400
// invalid_request when the header carrying it is malformed), with the error code we expect in
// the log line, and never reaches the origin or the token endpoint. Header URLs (`jku`, `x5u`)
// point at a loopback server that counts its hits: it must get none. The token, and any
// hostile `kid`, appear neither in the response nor in the Worker's console output.

import assert from 'node:assert/strict';
import { createHmac, createSign, KeyObject } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';

import { read, requestLog, startStack, withJwt } from './harness.mjs';
import { makeKey, nowSecs, startJwksServer } from './servers.mjs';

// 64 bytes; HS256 is allowed next to RS256 so that HMAC forgeries meet a real HMAC check.
const HMAC_SECRET = 'hostile-suite-hmac-secret-4kV8pQ2zX7mN1bR6tY3wE9uI0oA5sD2fG8hJ4lK';
const REALM = 'Bearer realm="edge-auth-proxy"';

const b64 = (bytes) => Buffer.from(bytes).toString('base64url');
const text = (value) => (typeof value === 'string' ? value : JSON.stringify(value));

/** `header` and `payload` (objects, or raw JSON text) joined, with the signature `sign` makes. */
async function rawJwt(header, payload, sign = async () => Buffer.alloc(0)) {
  const input = `${b64(text(header))}.${b64(text(payload))}`;
  return `${input}.${b64(await sign(Buffer.from(input)))}`;
}

/** RS256 over `input` with a jose key pair's private key (a WebCrypto CryptoKey). */
const rs256 = (key) => async (input) =>
  Buffer.from(await crypto.subtle.sign({ name: 'RSASSA-PKCS1-v1_5' }, key.privateKey, input));
const hs256 = (secret) => async (input) => createHmac('sha256', secret).update(input).digest();

describe('hostile tokens', () => {
  let stack, origin, token, gw, key, attacker, attackerServer;

  const claims = (extra = {}) => {
    const now = nowSecs();
    return { iss: 'https://issuer.test/', aud: 'profile-api', sub: 'cust-7f3a9c', iat: now, exp: now + 3600, ...extra };
  };
  const header = (extra = {}) => ({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...extra });
  /** Correctly signed with the trusted key: only the part under test is wrong. */
  const signed = (h, p = claims()) => rawJwt(h, p, rs256(key));

  before(async () => {
    stack = await startStack({ bindings: { JWT_ALGORITHMS: 'RS256,HS256', JWT_HMAC_SECRET: HMAC_SECRET } });
    ({ origin, token, gw, key } = stack);
    attacker = await makeKey('RS256', 'attacker-key');
    // Serves the attacker's key set on every path, counting hits: the gateway must never ask.
    attackerServer = await startJwksServer({ keys: [attacker.publicJwk] });
  });
  after(async () => {
    await stack?.close();
    await attackerServer?.close();
  });
  beforeEach(() => origin.reset());

  let seq = 0;
  /**
   * Sends `jwt` as `customer-auth: JWT <jwt>` (or `headers` as given) and checks the refusal:
   * status, challenge, problem body without the token, the log's outcome, nothing forwarded.
   */
  async function refused(jwt, { status = 401, error = 'invalid_token', code, headers, secrets = [] } = {}) {
    const id = `hostile-${++seq}`;
    const res = await read(
      await gw.fetch('/account/getprofile', { method: 'POST', headers: { ...(headers ?? withJwt(jwt)), 'x-request-id': id }, body: '{}' }),
    );
    assert.equal(res.status, status, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const challenge = res.headers.get('www-authenticate') ?? '';
    assert.ok(challenge.startsWith(`${REALM}, error="${error}", error_description="`), `WWW-Authenticate: ${challenge}`);
    assert.equal(res.json?.status, status);
    for (const s of [jwt, ...jwt.split('.').filter((p) => p.length > 16), ...secrets]) {
      assert.ok(!res.text.includes(s), 'the body echoes the token or a hostile value');
      assert.ok(!challenge.includes(s), 'the challenge echoes the token or a hostile value');
    }
    assert.equal(origin.count, 0, 'the origin was reached');
    const line = await requestLog(gw, id);
    assert.ok(line, `no log line for ${id}`);
    if (code) assert.equal(line.outcome, code);
    assert.equal(line.kid, undefined, 'a refused token\'s kid was logged');
    return { res, line };
  }

  test('a correctly signed token passes (the suite\'s baseline)', async () => {
    const res = await read(await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(await signed(header())) }));
    assert.equal(res.status, 200, res.text);
    assert.equal(origin.count, 1);
  });

  test('alg none, in any spelling, with or without a signature', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
      await refused(await rawJwt(header({ alg }), claims()), { code: 'alg_not_allowed' });
      await refused(await rawJwt(header({ alg }), claims(), rs256(key)), { code: 'alg_not_allowed' });
    }
  });

  test('HS256 signed with the RSA public key\'s bytes (JWK text, PEM, DER, modulus)', async () => {
    const publicKey = KeyObject.from(key.publicKey);
    const secrets = [
      JSON.stringify(key.publicJwk),
      publicKey.export({ type: 'spki', format: 'pem' }),
      publicKey.export({ type: 'pkcs1', format: 'pem' }),
      publicKey.export({ type: 'spki', format: 'der' }),
      Buffer.from(key.publicJwk.n, 'base64url'),
    ];
    for (const secret of secrets) {
      for (const kid of [key.kid, undefined]) {
        const forged = await rawJwt({ alg: 'HS256', typ: 'JWT', kid }, claims(), hs256(secret));
        await refused(forged, { code: 'bad_signature' });
      }
    }
  });

  test('kid with path and URL tricks, huge, or with control characters: unknown, and never logged', async () => {
    const tricks = [
      '../../etc/passwd',
      '/etc/passwd',
      `http://127.0.0.1:${new URL(attackerServer.url).port}/x`,
      attackerServer.url,
      'file:///etc/passwd',
      'k'.repeat(3000),
      `${key.kid}\u0000`,
      `${key.kid}\r\nx-injected: 1`,
    ];
    for (const kid of tricks) {
      await refused(await signed(header({ kid })), { code: 'unknown_kid', secrets: kid.length > 3 ? [kid] : [] });
    }
    for (const kid of [7, { kid: key.kid }, [key.kid], true]) {
      await refused(await signed(header({ kid })), { code: 'malformed_token' });
    }
    const output = gw.output();
    for (const kid of tricks) assert.ok(!output.includes(kid), `the console carries a hostile kid: ${kid.slice(0, 40)}`);
    assert.ok(!output.includes('x-injected'));
    assert.equal(attackerServer.count, 0, 'the gateway fetched a URL from a kid');
  });

  test('jku, x5u and jwk are never followed or trusted; the attacker\'s own key does not verify', async () => {
    const attackerSigned = (h) => rawJwt(h, claims(), rs256(attacker));
    const jkuUrl = attackerServer.url;
    const x5uUrl = attackerServer.url.replace('/.well-known/jwks.json', '/cert.pem');
    const cases = [
      [{ alg: 'RS256', kid: key.kid, jku: jkuUrl }, 'bad_signature'],
      [{ alg: 'RS256', jku: jkuUrl }, 'bad_signature'],
      [{ alg: 'RS256', kid: attacker.kid, jku: jkuUrl }, 'unknown_kid'],
      [{ alg: 'RS256', kid: key.kid, x5u: x5uUrl }, 'bad_signature'],
      [{ alg: 'RS256', kid: attacker.kid, x5u: x5uUrl }, 'unknown_kid'],
      [{ alg: 'RS256', kid: key.kid, jwk: attacker.publicJwk }, 'bad_signature'],
      [{ alg: 'RS256', jwk: attacker.publicJwk }, 'bad_signature'],
      [{ alg: 'RS256', kid: attacker.kid, jwk: attacker.publicJwk }, 'unknown_kid'],
      [{ alg: 'RS256', kid: key.kid, jku: jkuUrl, x5u: x5uUrl, jwk: attacker.publicJwk }, 'bad_signature'],
    ];
    for (const [h, code] of cases) await refused(await attackerSigned(h), { code });
    // Even with a trusted signature the header's URLs are not fetched: the token passes on the
    // configured key alone.
    const res = await read(
      await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(await signed(header({ jku: jkuUrl, x5u: x5uUrl }))) }),
    );
    assert.equal(res.status, 200, res.text);
    assert.equal(attackerServer.count, 0, 'the gateway fetched a URL from the token header');
  });

  test('crit with unknown (or any) extensions', async () => {
    for (const crit of [['x-unknown'], ['b64'], ['exp'], []]) {
      await refused(await signed(header({ crit, 'x-unknown': true, b64: true })), { code: 'critical_header' });
    }
  });

  test('oversized tokens: refused unread, with a clear description', async () => {
    for (const filler of [9 * 1024, 64 * 1024]) {
      const big = await signed(header(), claims({ filler: 'x'.repeat(filler) }));
      const { res } = await refused(big, { code: 'token_too_large' });
      assert.match(res.headers.get('www-authenticate'), /error_description="The token is too large"/);
      assert.equal(res.json.detail, 'The token is too large.');
    }
  });

  test('segments that are not JSON, or not objects', async () => {
    for (const [h, p] of [
      ['not json', claims()],
      ['[]', claims()],
      ['null', claims()],
      ['"RS256"', claims()],
      [header(), 'not json'],
      [header(), '[1,2]'],
      [header(), 'null'],
      [header(), '"exp"'],
      [header(), ''],
      [header(), `${text(claims())}{}`],
    ]) {
      await refused(await signed(h, p), { code: 'malformed_token' });
    }
    // Segments that are not base64url at all.
    for (const t of ['%%%.%%%.%%%', 'eyJhbGciOi', 'a.b', 'e30.e30.e30.e30.e30']) {
      await refused(t, { code: 'malformed_token' });
    }
  });

  test('duplicate header parameters or claims', async () => {
    const c = text(claims()).slice(1, -1);
    for (const payload of [`{${c},"sub":"admin"}`, `{${c},"exp":99999999999}`, `{${c},"aud":"other-api"}`]) {
      await refused(await signed(header(), payload), { code: 'duplicate_member' });
    }
    for (const h of [
      `{"alg":"none","alg":"RS256","kid":"${key.kid}"}`,
      `{"alg":"RS256","kid":"${key.kid}","kid":"other"}`,
    ]) {
      await refused(await signed(h), { code: 'duplicate_member' });
    }
  });

  test('wrong types for exp and aud', async () => {
    for (const extra of [{ exp: String(nowSecs() + 3600) }, { exp: true }, { exp: [nowSecs() + 3600] }, { exp: { t: 1 } }]) {
      await refused(await signed(header(), claims(extra)), { code: 'invalid_claim' });
    }
    for (const aud of [7, ['profile-api', 7], { aud: 'profile-api' }, null]) {
      await refused(await signed(header(), claims({ aud })), { code: 'invalid_claim' });
    }
  });

  test('trailing data after the token', async () => {
    const good = await signed(header());
    // Symbols that leave the signature a length no base64url text has (4n + 1).
    const dangling = 'A'.repeat((5 - (good.split('.')[2].length % 4)) % 4 || 4);
    for (const t of [`${good}.`, `${good}.x`, `${good}..`, `${good}.${good.split('.')[2]}`, `${good}=`, `${good}==`, `${good}${dangling}`]) {
      await refused(t, { code: 'malformed_token' });
    }
    // Appended symbols that still spell whole bytes lengthen the signature, which then fails.
    await refused(`${good}AAAA`, { code: 'bad_signature' });
    // A second word after the token makes the header itself malformed: 400.
    await refused(`${good} extra`, { status: 400, error: 'invalid_request', code: 'malformed_auth_header' });
  });

  test('a malformed customer-auth header: 400 invalid_request', async () => {
    const good = await signed(header());
    for (const value of [`Bearer ${good}`, 'JWT', `JWT ${good} ${good}`, `JWT${good}`]) {
      await refused(good, { status: 400, error: 'invalid_request', code: 'malformed_auth_header', headers: { 'customer-auth': value } });
    }
    // Two customer-auth headers, over a raw connection (fetch would join them).
    const res = await gw.raw('/account/getprofile', {
      method: 'POST',
      headers: { 'customer-auth': [`JWT ${good}`, `JWT ${good}`] },
    });
    assert.equal(res.status, 400, res.body.toString());
    assert.match(res.headers['www-authenticate'] ?? '', /error="invalid_request"/);
    assert.ok(!res.body.toString().includes(good));
    assert.equal(origin.count, 0);
  });

  test('nothing refused reached the token endpoint or the attacker\'s server', () => {
    // The baseline and the trusted-jku tests fetched one access token; refusals add none.
    assert.ok(token.count <= 1, `token endpoint called ${token.count} times`);
    assert.equal(attackerServer.count, 0);
  });
});

// ES384 and ES512 are checked by WebCrypto in the Worker (no pure-Rust P-384/P-521 in the wasm):
// each curve is its own key family, and a signature is exactly r || s at the curve's size.
describe('hostile ES384 and ES512 tokens', () => {
  let stack, origin, gw, p256, p384, p521;

  const claims = () => {
    const now = nowSecs();
    return { iss: 'https://issuer.test/', aud: 'profile-api', sub: 'cust-7f3a9c', iat: now, exp: now + 3600 };
  };
  /** ECDSA over `input` with `key`'s private key and `hash`: WebCrypto's raw r || s. */
  const ecdsa = (key, hash) => async (input) =>
    Buffer.from(await crypto.subtle.sign({ name: 'ECDSA', hash }, key.privateKey, input));
  /** Signs with `sign`, then replaces the signature with `mangle(signature)`. */
  const mangled = async (header, sign, mangle) => {
    const jwt = await rawJwt(header, claims(), sign);
    const [h, p, s] = jwt.split('.');
    return `${h}.${p}.${b64(mangle(Buffer.from(s, 'base64url')))}`;
  };

  before(async () => {
    [p256, p384, p521] = await Promise.all([makeKey('ES256', 'p256-key'), makeKey('ES384', 'p384-key'), makeKey('ES512', 'p521-key')]);
    // The same P-384 point with y's last bit flipped: off the curve. This build keeps it (its
    // key parsing is structural) and WebCrypto's import refuses it.
    const y = Buffer.from(p384.publicJwk.y, 'base64url');
    y[y.length - 1] ^= 1;
    const offCurve = { ...p384.publicJwk, kid: 'p384-off-curve', y: b64(y) };
    stack = await startStack({
      bindings: {
        JWT_ALGORITHMS: 'ES256,ES384,ES512',
        JWT_JWKS: JSON.stringify({ keys: [p256.publicJwk, p384.publicJwk, p521.publicJwk, offCurve] }),
      },
    });
    ({ origin, gw } = stack);
  });
  after(async () => {
    await stack?.close();
  });
  beforeEach(() => origin.reset());

  let seq = 0;
  async function send(jwt) {
    const id = `hostile-ec-${++seq}`;
    const res = await read(
      await gw.fetch('/account/getprofile', { method: 'POST', headers: { ...withJwt(jwt), 'x-request-id': id }, body: '{}' }),
    );
    return { res, line: await requestLog(gw, id) };
  }
  async function refused(jwt, code, what) {
    const { res, line } = await send(jwt);
    assert.equal(res.status, 401, `${what}: ${res.text}`);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/, what);
    assert.equal(line?.outcome, code, what);
    assert.equal(origin.count, 0, `${what}: the origin was reached`);
  }

  test('correctly signed ES256, ES384 and ES512 tokens pass (the baseline)', async () => {
    for (const [key, alg, hash] of [[p256, 'ES256', 'SHA-256'], [p384, 'ES384', 'SHA-384'], [p521, 'ES512', 'SHA-512']]) {
      for (const kid of [key.kid, undefined]) {
        const { res } = await send(await rawJwt({ alg, typ: 'JWT', kid }, claims(), ecdsa(key, hash)));
        assert.equal(res.status, 200, `${alg} kid ${kid}: ${res.text}`);
      }
    }
    assert.equal(origin.count, 6);
  });

  test('an ES384 token never verifies with a P-256 key, nor ES512 with a P-384 key', async () => {
    // Signed by the P-256 key (with SHA-384, which WebCrypto allows on any curve) and naming it:
    // refused before any signature check, the key is of the wrong family.
    await refused(await rawJwt({ alg: 'ES384', kid: p256.kid }, claims(), ecdsa(p256, 'SHA-384')), 'key_mismatch', 'ES384 by P-256, P-256 kid');
    // Without a kid, only the P-384 keys are tried, and the P-256 signature fails against them.
    await refused(await rawJwt({ alg: 'ES384' }, claims(), ecdsa(p256, 'SHA-384')), 'bad_signature', 'ES384 by P-256, no kid');
    await refused(await rawJwt({ alg: 'ES512', kid: p384.kid }, claims(), ecdsa(p384, 'SHA-512')), 'key_mismatch', 'ES512 by P-384, P-384 kid');
    await refused(await rawJwt({ alg: 'ES256', kid: p521.kid }, claims(), ecdsa(p521, 'SHA-256')), 'key_mismatch', 'ES256 by P-521, P-521 kid');
    // A genuine ES384 signature relabelled ES512 (or ES256) fails too.
    await refused(await rawJwt({ alg: 'ES512' }, claims(), ecdsa(p384, 'SHA-384')), 'bad_signature', 'ES384 signature labelled ES512');
  });

  test('an ES512 signature of 131 or 133 bytes, or DER-encoded, is a bad signature', async () => {
    const h512 = { alg: 'ES512', kid: p521.kid };
    const sign512 = ecdsa(p521, 'SHA-512');
    await refused(await mangled(h512, sign512, (s) => s.subarray(0, 131)), 'bad_signature', 'ES512, 131 bytes');
    await refused(await mangled(h512, sign512, (s) => s.subarray(1)), 'bad_signature', 'ES512, leading byte dropped');
    await refused(await mangled(h512, sign512, (s) => Buffer.concat([s, Buffer.alloc(1)])), 'bad_signature', 'ES512, 133 bytes');
    await refused(await mangled(h512, sign512, () => Buffer.alloc(132)), 'bad_signature', 'ES512, all zeros');
    const h384 = { alg: 'ES384', kid: p384.kid };
    await refused(await mangled(h384, ecdsa(p384, 'SHA-384'), (s) => s.subarray(0, 95)), 'bad_signature', 'ES384, 95 bytes');
    // The same signatures in DER (what OpenSSL tools emit by default) are not JWS signatures.
    const der = (key, hash) => async (input) =>
      createSign(hash).update(input).sign({ key: KeyObject.from(key.privateKey), dsaEncoding: 'der' });
    await refused(await rawJwt(h384, claims(), der(p384, 'sha384')), 'bad_signature', 'ES384, DER');
    await refused(await rawJwt(h512, claims(), der(p521, 'sha512')), 'bad_signature', 'ES512, DER');
  });

  test('a P-384 key off the curve verifies nothing: WebCrypto refuses its import', async () => {
    // Signed by the real P-384 key, whose x the off-curve key shares.
    await refused(
      await rawJwt({ alg: 'ES384', kid: 'p384-off-curve' }, claims(), ecdsa(p384, 'SHA-384')),
      'bad_signature',
      'off-curve key',
    );
    // The good key still works after the failed import.
    const { res } = await send(await rawJwt({ alg: 'ES384', kid: p384.kid }, claims(), ecdsa(p384, 'SHA-384')));
    assert.equal(res.status, 200, res.text);
  });
});
