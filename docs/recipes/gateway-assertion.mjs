// Checks the gateway assertion on a request the origin received (node:http or Express `req`):
// signed by the gateway's published key, of type gateway+jwt, from the gateway, for this
// origin, at most 60 s old, and made for this method and this path. Throws when a check fails;
// answers the assertion's claims (sub, idp, scope, rid, ...) when all pass.
import { createRemoteJWKSet, jwtVerify } from 'jose';

export function gatewayAssertionChecker({ jwksUrl, issuer, audience, header = 'x-gateway-assertion' }) {
  const keys = createRemoteJWKSet(new URL(jwksUrl));
  return async function check(req) {
    const { payload } = await jwtVerify(req.headers[header], keys, {
      issuer, audience, typ: 'gateway+jwt', algorithms: ['ES256', 'EdDSA'], maxTokenAge: 60,
      requiredClaims: ['iat', 'exp', 'jti', 'rid', 'htm', 'htu'],
    });
    const htu = new URL(audience).origin + req.url.split('?')[0];
    if (payload.htm !== req.method || payload.htu !== htu) {
      throw new Error('the gateway assertion was made for another request');
    }
    return payload;
  };
}
