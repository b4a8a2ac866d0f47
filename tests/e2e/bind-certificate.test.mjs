// `bind` and `client_certificate` in the built Worker: a path segment and a header bound to the
// customer's claims (percent-encoded, missing, an array claim, a header sent twice or in two
// spellings, a case difference), and the calling partner's certificate as Miniflare hands the
// edge's report to the Worker (`dispatchFetch(url, { cf: { tlsClientAuth } })` sets
// `request.cf`): every state, the allow-lists, and combined with the customer's JWT. Every
// refusal is 403 problem+json and reaches no origin.

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';

import { read, requestLog, startStack } from './harness.mjs';
import { signJwt } from './servers.mjs';

const PARTNER = 'CN=partner-prod,O=Partner';
const FP = '3f1c0e2a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e';
const FP_COLONS = FP.toUpperCase().match(/../g).join(':');

/** What the edge reports of a certificate it verified, with `over` changing some fields. */
const verified = (over = {}) => ({
  certPresented: '1',
  certVerified: 'SUCCESS',
  certRevoked: '0',
  certSubjectDNRFC2253: PARTNER,
  certFingerprintSHA256: FP,
  ...over,
});

describe('bind and client_certificate', () => {
  let stack, gw, origin;

  before(async () => {
    stack = await startStack({
      bindings: {
        ROUTES: JSON.stringify([
          { prefix: '/accounts', bind: { path_segment: 2, claim: 'sub' } },
          { prefix: '/orgs', bind: { path_segment: 2, claim: 'orgs' } },
          { prefix: '/tenant', bind: { header: 'x-account-id', claim: 'sub' } },
          { prefix: '/partner', auth: 'public', client_certificate: { required: true, subjects: [PARTNER] } },
          { prefix: '/pinned', auth: 'public', client_certificate: { required: true, fingerprints_sha256: [FP_COLONS] } },
          { prefix: '/any-cert', auth: 'public', client_certificate: { required: true } },
          { prefix: '/both', client_certificate: { required: true, subjects: [PARTNER] }, bind: { path_segment: 2, claim: 'sub' } },
          { prefix: '/', auth: 'public' },
        ]),
      },
    });
    ({ gw, origin } = stack);
  });
  after(() => stack?.close());
  beforeEach(() => origin.reset());

  const token = (claims = {}) => signJwt(stack.key, { claims: { sub: 'alice', ...claims } });
  const bearer = async (claims) => ({ authorization: `Bearer ${await token(claims)}` });

  /** 403 problem+json whose type ends in `slug`, nothing at the origin; the log line's reason. */
  async function refused(res, slug) {
    const r = await read(res);
    assert.equal(r.status, 403, r.text);
    assert.match(r.headers.get('content-type'), /application\/problem\+json/);
    assert.ok(r.json.type.endsWith(slug), r.json.type);
    assert.equal(origin.requests.length, 0, 'forwarded');
    return requestLog(gw, r.json.request_id);
  }

  async function forwarded(res, path) {
    const r = await read(res);
    assert.equal(r.status, 200, r.text);
    assert.equal(origin.requests.at(-1).url, path);
  }

  test('a path segment bound to sub: own account passes, someone else\'s is 403', async () => {
    await forwarded(await gw.fetch('/accounts/alice/profile', { headers: await bearer() }), '/accounts/alice/profile');
    origin.reset();
    const log = await refused(await gw.fetch('/accounts/bob/profile', { headers: await bearer() }), 'binding-mismatch');
    assert.equal(log.outcome, 'binding_mismatch');
    assert.equal(log.binding, 'mismatch');
  });

  test('percent-encoded segments are decoded once, on the normalized path', async () => {
    await forwarded(await gw.fetch('/accounts/al%69ce/profile', { headers: await bearer() }), '/accounts/alice/profile');
    origin.reset();
    await refused(await gw.fetch('/accounts/b%6Fb/profile', { headers: await bearer() }), 'binding-mismatch');
    origin.reset();
    // An encoded slash could be one segment here and two at the origin: refused before routing.
    const r = await read(await gw.fetch('/accounts/alice%2Fbob/profile', { headers: await bearer({ sub: 'alice/bob' }) }));
    assert.equal(r.status, 400);
    assert.equal(origin.requests.length, 0);
    // Dot segments are resolved first: alice/../bob is bob.
    const log = await refused(await gw.fetch('/accounts/alice/%2E%2E/bob/x', { headers: await bearer() }), 'binding-mismatch');
    assert.equal(log.binding, 'mismatch');
  });

  test('a missing segment, a missing claim and a case difference are 403', async () => {
    let log = await refused(await gw.fetch('/accounts/', { headers: await bearer() }), 'binding-mismatch');
    assert.equal(log.binding, 'absent_segment');
    log = await refused(await gw.fetch('/orgs/acme/x', { headers: await bearer() }), 'binding-mismatch');
    assert.equal(log.binding, 'absent_claim');
    log = await refused(await gw.fetch('/accounts/Alice/x', { headers: await bearer() }), 'binding-mismatch');
    assert.equal(log.binding, 'mismatch');
  });

  test('an array claim: one of its values, and a number as decimal text', async () => {
    const headers = await bearer({ orgs: ['acme', 'beta', 42] });
    await forwarded(await gw.fetch('/orgs/beta/x', { headers }), '/orgs/beta/x');
    await forwarded(await gw.fetch('/orgs/42/x', { headers }), '/orgs/42/x');
    origin.reset();
    await refused(await gw.fetch('/orgs/gamma/x', { headers }), 'binding-mismatch');
  });

  test('a header binding: once, in one spelling', async () => {
    const headers = await bearer();
    await forwarded(await gw.fetch('/tenant/x', { headers: { ...headers, 'x-account-id': 'alice' } }), '/tenant/x');
    assert.equal(origin.requests.at(-1).headers['x-account-id'], 'alice');
    origin.reset();
    for (const [extra, reason] of [
      [{ 'x-account-id': 'bob' }, 'mismatch'],
      [{ 'x-account-id': 'ALICE' }, 'mismatch'],
      [{}, 'absent_header'],
      [{ 'x-account-id': 'alice', 'x_account_id': 'bob' }, 'repeated_header'],
    ]) {
      const log = await refused(await gw.fetch('/tenant/x', { headers: { ...headers, ...extra } }), 'binding-mismatch');
      assert.equal(log.binding, reason, JSON.stringify(extra));
    }
    // Sent twice on the wire: Fetch joins the two into one value with ", ".
    const twice = new Headers(headers);
    twice.append('x-account-id', 'alice');
    twice.append('x-account-id', 'bob');
    const log = await refused(await gw.fetch('/tenant/x', { headers: twice }), 'binding-mismatch');
    assert.equal(log.binding, 'repeated_header');
  });

  test('client_certificate: every state the edge reports', async () => {
    for (const path of ['/partner/x', '/pinned/x', '/any-cert/x']) {
      await forwarded(await gw.fetch(path, { cf: { tlsClientAuth: verified() } }), path);
      origin.reset();
      for (const [cf, reason] of [
        [undefined, 'absent'],
        [{}, 'absent'],
        [{ tlsClientAuth: verified({ certPresented: '0', certVerified: 'NONE' }) }, 'absent'],
        [{ tlsClientAuth: verified({ certVerified: 'FAILED:self signed certificate' }) }, 'not_verified'],
        [{ tlsClientAuth: verified({ certRevoked: '1' }) }, 'revoked'],
      ]) {
        const log = await refused(await gw.fetch(path, cf ? { cf } : {}), 'client-certificate-required');
        assert.equal(log.outcome, 'client_certificate_required');
        assert.equal(log.client_certificate, reason, `${path} ${JSON.stringify(cf)}`);
      }
    }
  });

  test('client_certificate: another subject, and a fingerprint match with colons and case', async () => {
    const other = { tlsClientAuth: verified({ certSubjectDNRFC2253: 'CN=intruder,O=Else', certFingerprintSHA256: '00'.repeat(32) }) };
    let log = await refused(await gw.fetch('/partner/x', { cf: other }), 'client-certificate-required');
    assert.equal(log.client_certificate, 'not_listed');
    log = await refused(await gw.fetch('/pinned/x', { cf: other }), 'client-certificate-required');
    assert.equal(log.client_certificate, 'not_listed');
    // Configured as AB:CD:... upper case; the edge reports lower-case hex.
    const pinned = { tlsClientAuth: verified({ certSubjectDNRFC2253: 'CN=anyone' }) };
    await forwarded(await gw.fetch('/pinned/x', { cf: pinned }), '/pinned/x');
    // With no list, any verified certificate.
    await forwarded(await gw.fetch('/any-cert/x', { cf: other }), '/any-cert/x');
  });

  test('certificate and customer: both must hold, the certificate first', async () => {
    const good = await bearer();
    const expired = { authorization: `Bearer ${await signJwt(stack.key, { claims: { sub: 'alice', exp: Math.floor(Date.now() / 1000) - 600 } })}` };
    const partner = { tlsClientAuth: verified() };
    await forwarded(await gw.fetch('/both/alice/x', { headers: good, cf: partner }), '/both/alice/x');
    origin.reset();
    // Certificate good, token bad: the customer's 401.
    const r = await read(await gw.fetch('/both/alice/x', { headers: expired, cf: partner }));
    assert.equal(r.status, 401);
    assert.equal(origin.requests.length, 0);
    // Certificate bad, token good: 403 for the partner.
    await refused(await gw.fetch('/both/alice/x', { headers: good, cf: { tlsClientAuth: verified({ certSubjectDNRFC2253: 'CN=x' }) } }), 'client-certificate-required');
    // Certificate good, token good, someone else's account: 403 binding-mismatch.
    await refused(await gw.fetch('/both/bob/x', { headers: good, cf: partner }), 'binding-mismatch');
  });
});
