// Certificate-bound access tokens (RFC 8705) in the built Worker, with oidc-provider 8 as the real
// issuer: its `mTLS` feature with `certificateBoundAccessTokens` binds the client-credentials
// JWT access tokens it issues to the client certificate of the token request (`cnf.x5t#S256`).
// There is no TLS here: oidc-provider's `getCertificate` reads the PEM from a request header the
// test sends, and the gateway gets the edge's report of the caller's certificate as Miniflare
// hands it over (`dispatchFetch(url, { cf: { tlsClientAuth } })` sets `request.cf`).
//
// The certificates are made here, self-signed P-256, with node:crypto and a few lines of DER
// (no openssl needed); node's own X509Certificate parses them and its fingerprint is checked
// against ours. The token with the certificate it is bound to passes and is forwarded; each
// attacker's attempt, one at a time, is 401 `invalid_token` and reaches no origin.

import assert from 'node:assert/strict';
import { X509Certificate, createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { read, requestLog, startStack } from './harness.mjs';
import { sendersBindings, startOidcProvider } from './oidc.mjs';

const RESOURCE = 'https://profile-api.test/';
const CERT_HEADER = 'x-test-client-cert';

// --- A self-signed certificate, DER by hand -------------------------------------------------

function derLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag, ...parts) => {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
};
const seq = (...parts) => tlv(0x30, ...parts);
// ecdsa-with-SHA256 (1.2.840.10045.4.3.2) and id-at-commonName (2.5.4.3).
const ECDSA_SHA256 = seq(Buffer.from('06082a8648ce3d040302', 'hex'));
const name = (cn) => seq(tlv(0x31, seq(Buffer.from('0603550403', 'hex'), tlv(0x0c, Buffer.from(cn)))));
const utcTime = (d) => tlv(0x17, Buffer.from(`${d.toISOString().slice(2, 19).replace(/[-T:]/g, '')}Z`));

/**
 * A self-signed X.509 v3 certificate for `cn` (P-256, ECDSA-SHA256), valid for a day:
 * `{ pem, der, hex (SHA-256 of the DER, lower-case hex, as Cloudflare reports it), x5t }`.
 */
function makeCertificate(cn) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const now = Date.now();
  const tbs = seq(
    tlv(0xa0, tlv(0x02, Buffer.from([2]))), // version v3
    tlv(0x02, Buffer.concat([Buffer.from([0x01]), randomBytes(8)])), // a positive serial
    ECDSA_SHA256,
    name(cn),
    seq(utcTime(new Date(now - 60_000)), utcTime(new Date(now + 86_400_000))),
    name(cn),
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign('sha256', tbs, privateKey);
  const der = seq(tbs, ECDSA_SHA256, tlv(0x03, Buffer.from([0]), signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  const digest = createHash('sha256').update(der).digest();
  // node's own parser reads it, the same subject, the same fingerprint, and the signature holds.
  const parsed = new X509Certificate(pem);
  assert.equal(parsed.subject, `CN=${cn}`);
  assert.equal(parsed.fingerprint256, digest.toString('hex').toUpperCase().match(/../g).join(':'));
  assert.ok(parsed.verify(parsed.publicKey), 'self-signed');
  return { pem, der, hex: digest.toString('hex'), x5t: digest.toString('base64url') };
}

// --- oidc-provider ----------------------------------------------------------------------------

/**
 * oidc-provider on loopback: client credentials, JWT access tokens (ES256) for RESOURCE. Client
 * `mtls-client` has `tls_client_certificate_bound_access_tokens`; `plain-client` does not.
 */
async function startOpenIdProvider() {
  const client = (id, extra) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'profile',
    id_token_signed_response_alg: 'ES256',
    ...extra,
  });
  const { server, issuer } = await startOidcProvider({
    clients: [
      client('mtls-client', { tls_client_certificate_bound_access_tokens: true }),
      client('plain-client'),
    ],
    scope: 'profile',
    resource: RESOURCE,
    cookieKey: 'cert-e2e-cookie-key',
    features: {
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        // What a TLS-terminating proxy in front of it would pass on: the PEM, URL-encoded.
        getCertificate(ctx) {
          const value = ctx.get(CERT_HEADER);
          return value ? decodeURIComponent(value) : undefined;
        },
      },
    },
  });
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    /** The token endpoint's answer for `clientId`, the token request made with `cert` (or none). */
    async tokenRequest(clientId, cert) {
      const headers = {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${clientId}:${clientId}-secret`).toString('base64')}`,
      };
      if (cert) headers[CERT_HEADER] = encodeURIComponent(cert.pem);
      const res = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers,
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'profile' }).toString(),
      });
      return { status: res.status, body: await res.json() };
    },
    /** An access token for `clientId`, bound to `cert` when the client is `mtls-client`. */
    async accessToken(clientId, cert) {
      const { status, body } = await this.tokenRequest(clientId, cert);
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(body.token_type, 'Bearer');
      return body.access_token;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

describe('certificate-bound tokens against oidc-provider', () => {
  let oidc, cert, otherCert, token, plain, s;

  before(async () => {
    cert = makeCertificate('partner-client');
    otherCert = makeCertificate('attacker');
    oidc = await startOpenIdProvider();
    token = await oidc.accessToken('mtls-client', cert);
    plain = await oidc.accessToken('plain-client');
    s = await startStack({
      bindings: sendersBindings(oidc, RESOURCE, [{ prefix: '/strict', sender_constraint: 'required' }, { prefix: '/' }]),
    });
  });
  after(async () => {
    await s?.close();
    await oidc?.close();
  });

  /** What the edge reports of a client certificate it verified, `over` changing some fields. */
  const edge = (over = {}) => ({
    certPresented: '1',
    certVerified: 'SUCCESS',
    certRevoked: '0',
    certSubjectDNRFC2253: 'CN=partner-client',
    certFingerprintSHA256: cert.hex,
    ...over,
  });

  /** `GET path` with `Authorization: Bearer tok` and, when given, `tlsClientAuth`. */
  async function get(path, tok, tlsClientAuth) {
    const before = s.origin.requests.length;
    const init = { headers: { authorization: `Bearer ${tok}` } };
    if (tlsClientAuth !== undefined) init.cf = { tlsClientAuth };
    const r = await read(await s.gw.fetch(path, init));
    return { ...r, forwarded: s.origin.requests.length - before };
  }

  /** 401 invalid_token, the Bearer challenge, nothing at the origin; the log line's outcome. */
  async function refused(r, what) {
    assert.equal(r.status, 401, `${what}: ${r.text}`);
    assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer .*error="invalid_token"/, what);
    assert.equal(r.json?.type, 'urn:edge-auth-proxy:problem:invalid-token', what);
    assert.equal(r.forwarded, 0, `${what}: reached the origin`);
    return (await requestLog(s.gw, r.json.request_id))?.outcome;
  }

  test('oidc-provider binds the token to the certificate: cnf.x5t#S256 = base64url(SHA-256(DER))', async () => {
    const claims = claimsOf(token);
    assert.equal(claims.cnf?.['x5t#S256'], cert.x5t);
    assert.equal(claims.cnf.jkt, undefined);
    assert.equal(claims.aud, RESOURCE);
    assert.equal(claimsOf(plain).cnf, undefined, 'the other client gets a plain bearer token');
    // The binding is not optional for this client: no certificate, no token.
    const without = await oidc.tokenRequest('mtls-client');
    assert.equal(without.status, 400);
    assert.equal(without.body.error, 'invalid_grant');
  });

  test('with the certificate it is bound to: 200, forwarded with the token', async () => {
    for (const path of ['/account/x', '/strict/x']) {
      const r = await get(path, token, edge());
      assert.equal(r.status, 200, `${path}: ${r.text}`);
      assert.equal(r.forwarded, 1);
      assert.equal(s.origin.requests.at(-1).url, path);
      assert.equal(s.origin.requests.at(-1).headers['customer-auth'], `JWT ${token}`);
    }
    // In customer-auth too: the binding does not depend on where the token came.
    const before = s.origin.requests.length;
    const r = await read(await s.gw.fetch('/account/x', { headers: { 'customer-auth': `JWT ${token}` }, cf: { tlsClientAuth: edge() } }));
    assert.equal(r.status, 200, r.text);
    assert.equal(s.origin.requests.length, before + 1);
  });

  test('the attacker, one attempt at a time: 401 invalid_token, never forwarded', async () => {
    const cases = [
      ['no certificate (no tlsClientAuth)', undefined, 'certificate_binding_missing'],
      ['no certificate presented', edge({ certPresented: '0', certVerified: 'NONE', certFingerprintSHA256: '' }), 'certificate_binding_missing'],
      ['another certificate', edge({ certSubjectDNRFC2253: 'CN=attacker', certFingerprintSHA256: otherCert.hex }), 'certificate_binding_mismatch'],
      ['the certificate not verified', edge({ certVerified: 'FAILED:self signed certificate' }), 'certificate_binding_missing'],
      ['the certificate revoked', edge({ certRevoked: '1' }), 'certificate_binding_missing'],
      ['the thumbprint itself as the fingerprint', edge({ certFingerprintSHA256: cert.x5t }), 'certificate_binding_missing'],
      ['a fingerprint cut short', edge({ certFingerprintSHA256: cert.hex.slice(0, 62) }), 'certificate_binding_missing'],
      // Not what the edge sends ("+f" is not hex, though Rust's integer parser reads it as 0x0f):
      // no certificate, not another one.
      ['a fingerprint with sign characters', edge({ certFingerprintSHA256: cert.hex.replace(/.(.)/g, '+$1') }), 'certificate_binding_missing'],
    ];
    for (const [what, tls, outcome] of cases) {
      for (const path of ['/account/x', '/strict/x']) {
        const r = await get(path, token, tls);
        assert.equal(await refused(r, `${what} ${path}`), outcome, `${what} ${path}`);
      }
    }
  });

  test('the fingerprint in upper-case hex, or with colons: the same certificate, accepted', async () => {
    // Cloudflare reports certFingerprintSHA256 as lower-case hex (the Rules language reference:
    // "af363dc85bc942a8..."); the reference says "hex, case and colons ignored", compared as the
    // 32 bytes. A spelling of the same digest is the same certificate, not an attacker's way in
    // (and the edge, not the caller, writes this field).
    for (const fp of [cert.hex.toUpperCase(), cert.hex.toUpperCase().match(/../g).join(':')]) {
      const r = await get('/strict/x', token, edge({ certFingerprintSHA256: fp }));
      assert.equal(r.status, 200, `${fp}: ${r.text}`);
      assert.equal(r.forwarded, 1);
    }
    // Upper case of another certificate's digest is still another certificate.
    const r = await get('/strict/x', token, edge({ certFingerprintSHA256: otherCert.hex.toUpperCase() }));
    assert.equal(await refused(r, 'another certificate, upper case'), 'certificate_binding_mismatch');
  });

  test('sender_constraint "required": the bound token passes, a plain bearer token does not', async () => {
    const ok = await get('/strict/x', token, edge());
    assert.equal(ok.status, 200, ok.text);
    // The same issuer's plain bearer token, with or without a verified certificate alongside.
    for (const tls of [undefined, edge()]) {
      const r = await get('/strict/x', plain, tls);
      assert.equal(await refused(r, `plain bearer token, certificate ${tls ? 'sent' : 'absent'}`), 'not_sender_constrained');
    }
    // Elsewhere the plain bearer token passes as before.
    const elsewhere = await get('/account/x', plain);
    assert.equal(elsewhere.status, 200, elsewhere.text);
    assert.equal(elsewhere.forwarded, 1);
  });
});
