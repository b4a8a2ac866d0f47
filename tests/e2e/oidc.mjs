// oidc-provider 8 on loopback, as the end-to-end files start it: the client-credentials grant
// and RFC 9068 JWT access tokens for one resource, signed with a key made here. Each file names
// its clients, its scope and any further features (dPoP, mTLS, introspection).
import http from 'node:http';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

/**
 * Starts the provider on 127.0.0.1 (port 0) and returns `{ server, issuer, provider, jwk }`
 * (`jwk`: its signing key, private members included). `features` are added to
 * `clientCredentials` and `resourceIndicators`, which are always on.
 */
export async function startOidcProvider({ alg = 'ES256', kid = 'oidc-es', clients, scope, resource, cookieKey, features = {} }) {
  const server = http.createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const options = alg.startsWith('RS') || alg.startsWith('PS') ? { extractable: true, modulusLength: 2048 } : { extractable: true };
  const { privateKey } = await generateKeyPair(alg, options);
  const jwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [jwk] },
    scopes: [scope],
    cookies: { keys: [cookieKey] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      ...features,
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope,
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
          jwt: { sign: { alg } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  return { server, issuer, provider, jwk };
}

/**
 * The gateway's settings for the ES256 access tokens of a provider started here (`oidc`: its
 * `issuer` and `jwksUrl`), for the API `resource`, with `routes` (ROUTES) and 5 s of leeway.
 */
export function sendersBindings(oidc, resource, routes) {
  return {
    JWKS_URL: oidc.jwksUrl,
    JWT_JWKS: '',
    JWT_ISSUER: oidc.issuer,
    JWT_AUDIENCE: resource,
    JWT_ALGORITHMS: 'ES256',
    JWT_LEEWAY_SECONDS: '5',
    ROUTES: JSON.stringify(routes),
  };
}
