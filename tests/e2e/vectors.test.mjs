// The shared test vectors (tests/fixtures/jwt/vectors.json, made by make-vectors.mjs with jose)
// through the built Worker: the same tokens that tests/jwt_vectors.rs runs through the native
// verifier, with the same expected answers (the log line's `outcome` is the native error code).
//
// A valid token reaches the origin byte for byte; a tampered one gets 401 invalid_token and
// the origin hears nothing.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { CLIENT_ID, CLIENT_SECRET, ROOT, baseBindings, read, requestLog, startStack, withJwt } from './harness.mjs';
import { startJwksServer, startOrigin, startTokenEndpoint } from './servers.mjs';

const VECTORS = JSON.parse(readFileSync(path.join(ROOT, 'tests/fixtures/jwt/vectors.json'), 'utf8'));
const ASYMMETRIC = VECTORS.algorithms.filter((v) => v.public_jwk);
const HMAC = VECTORS.algorithms.filter((v) => v.secret);

/** Settings for the vectors' issuer and audience, with no key source yet. */
function bindingsFor({ origin, token }, extra) {
  const bindings = baseBindings({ origin, token, keys: [], ...extra });
  if (!('JWT_JWKS' in extra)) delete bindings.JWT_JWKS;
  return { ...bindings, JWT_ISSUER: VECTORS.issuer, JWT_AUDIENCE: VECTORS.audience };
}

/** The asymmetric vectors' public keys as one key set. */
const asymmetricJwks = () => ({ keys: ASYMMETRIC.map((v) => v.public_jwk) });
const asymmetricAlgorithms = ASYMMETRIC.map((v) => v.alg).join(',');

let seq = 0;
async function call(gw, jwt, label) {
  const id = `vec-${++seq}-${label.replace(/[^a-z0-9]+/gi, '-')}`;
  const res = await read(
    await gw.fetch('/account/getprofile', { method: 'POST', headers: withJwt(jwt, { 'x-request-id': id }), body: '{}' }),
  );
  return { id, res };
}

async function assertAccepted(gw, origin, vector) {
  const before = origin.count;
  const { res } = await call(gw, vector.valid, `${vector.alg}-valid`);
  assert.equal(res.status, 200, `${vector.alg}: ${res.text}`);
  assert.equal(origin.count, before + 1);
  assert.equal(origin.last().headers['customer-auth'], `JWT ${vector.valid}`, 'the origin saw another token');
}

async function assertTamperedRefused(gw, origin, vector) {
  for (const t of vector.tampered) {
    const before = origin.count;
    const { id, res } = await call(gw, t.token, `${vector.alg}-${t.name}`);
    const what = `${vector.alg} ${t.name}`;
    assert.equal(res.status, 401, `${what}: ${res.text}`);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/, what);
    assert.ok(!res.text.includes(t.token), `${what}: the token is echoed`);
    assert.equal(origin.count, before, `${what}: the origin was reached`);
    const line = await requestLog(gw, id);
    assert.equal(line?.outcome, t.error, `${what}: the Worker and the native suite disagree`);
  }
}

describe('vectors with inline keys: JWT_JWKS (asymmetric) and JWT_HMAC_SECRET (HS*)', () => {
  let origin, token;
  const gateways = {};

  before(async () => {
    [origin, token] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
    ]);
    // One Worker for every asymmetric algorithm (keys told apart by kid and JWK alg), and one
    // per HMAC algorithm, since each has its own secret.
    const shared = (await startStack({ servers: false,
      bindings: bindingsFor(
        { origin, token },
        { JWT_ALGORITHMS: asymmetricAlgorithms, JWT_JWKS: JSON.stringify(asymmetricJwks()) },
      ),
    })).gw;
    for (const v of ASYMMETRIC) gateways[v.alg] = shared;
    for (const v of HMAC) {
      gateways[v.alg] = (await startStack({ servers: false,
        bindings: bindingsFor({ origin, token }, { JWT_ALGORITHMS: v.alg, JWT_HMAC_SECRET: v.secret }),
      })).gw;
    }
  });
  after(async () => {
    for (const gw of new Set(Object.values(gateways))) await gw.dispose();
    await Promise.all([origin?.close(), token?.close()]);
  });

  for (const vector of VECTORS.algorithms) {
    test(`${vector.alg}: the valid token is forwarded byte for byte`, async () => {
      await assertAccepted(gateways[vector.alg], origin, vector);
    });
    test(`${vector.alg}: every tampered token is 401 invalid_token, the origin unreached`, async () => {
      await assertTamperedRefused(gateways[vector.alg], origin, vector);
    });
  }

  test('no HMAC Worker accepts another HMAC algorithm\'s token', async () => {
    for (const config of HMAC) {
      for (const vector of VECTORS.algorithms.filter((v) => v.alg !== config.alg)) {
        const before = origin.count;
        const { res } = await call(gateways[config.alg], vector.valid, `${vector.alg}-at-${config.alg}`);
        assert.equal(res.status, 401, `${vector.alg} token at the ${config.alg} Worker`);
        assert.equal(origin.count, before);
      }
    }
  });
});

describe('vectors with keys from JWKS_URL', () => {
  let origin, token, keyServer, gw;

  before(async () => {
    [origin, token, keyServer] = await Promise.all([
      startOrigin(),
      startTokenEndpoint({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET }),
      startJwksServer(asymmetricJwks()),
    ]);
    gw = (await startStack({ servers: false,
      bindings: bindingsFor({ origin, token }, { JWT_ALGORITHMS: asymmetricAlgorithms, JWKS_URL: keyServer.url }),
    })).gw;
  });
  after(async () => {
    await gw?.dispose();
    await Promise.all([origin?.close(), token?.close(), keyServer?.close()]);
  });

  test('every asymmetric vector: valid forwarded, tampered refused; the key set fetched once', async () => {
    for (const vector of ASYMMETRIC) {
      await assertAccepted(gw, origin, vector);
      await assertTamperedRefused(gw, origin, vector);
    }
    // Every kid is in the one published set: nothing triggers a refetch.
    assert.equal(keyServer.count, 1, `JWKS fetched ${keyServer.count} times`);
  });
});
