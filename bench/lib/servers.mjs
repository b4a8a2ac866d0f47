// The loopback servers of the benchmark, run in their own process (bench/run.mjs forks this
// file) so that they neither share the load generator's event loop nor count as its CPU:
//
// - the origin: a small JSON answer to every request, counting requests and whether each one
//   carried the three headers a gateway must attach (`Authorization: Bearer <issued token>`,
//   `customer-auth: JWT …`, `api-key`). It keeps no per-request records: it must cost the same
//   for every Worker under test;
// - the OAuth token endpoint and the JWKS server of the end-to-end tests (tests/e2e/servers.mjs),
//   which are called rarely and counted.
//
// Protocol (IPC): the parent sends { init: { clientId, clientSecret, apiKey, jwks } } and gets
// { ready: { origin, token, jwks } } (URLs); then { id, cmd: 'stats' } answers { id, stats }.

import http from 'node:http';

import { startJwksServer, startTokenEndpoint } from '../../tests/e2e/servers.mjs';

const BODY = JSON.stringify({ id: 'cust-7f3a9c', name: 'Alice Example', tier: 'gold', balance: { currency: 'EUR', amount: '1234.56' } });

async function startOrigin({ apiKey, issued }) {
  const stats = { requests: 0, withCredentials: 0, withoutCredentials: 0 };
  const server = http.createServer((req, res) => {
    stats.requests++;
    const auth = req.headers.authorization ?? '';
    const good =
      auth.startsWith('Bearer ') &&
      issued.includes(auth.slice(7)) &&
      req.headers['api-key'] === apiKey &&
      /^JWT [A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(req.headers['customer-auth'] ?? '');
    if (good) stats.withCredentials++;
    else stats.withoutCredentials++;
    // Drain the request body, then answer.
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(BODY), 'cache-control': 'private, max-age=0' });
      res.end(BODY);
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, stats };
}

let origin;
let token;
let jwks;

process.on('message', async (msg) => {
  if (msg.init) {
    const { clientId, clientSecret, apiKey, jwks: keySet } = msg.init;
    // A long lifetime: the access token is fetched once per Worker instance, then cached.
    token = await startTokenEndpoint({ clientId, clientSecret, expiresIn: 86_400 });
    origin = await startOrigin({ apiKey, issued: token.issued });
    jwks = await startJwksServer(keySet);
    process.send({ ready: { origin: origin.url, token: token.url, jwks: jwks.url } });
    return;
  }
  if (msg.cmd === 'stats') {
    process.send({
      id: msg.id,
      stats: { origin: { ...origin.stats }, tokenCalls: token.count, jwksCalls: jwks.count },
    });
  }
});

process.on('disconnect', () => process.exit(0));
