#!/usr/bin/env node
// `npm run demo` (after the Worker is built): the demo origin on 127.0.0.1:8788 and the gateway
// in `wrangler dev --config demo/wrangler.toml` on 127.0.0.1:8787, with the demo's secrets passed as --var.
// Ctrl-C (or SIGTERM) stops both.
//
// The gateway's configuration is demo/wrangler.toml (its own file, not an environment of the
// production wrangler.toml). It has no [build]: this script runs on the bundle `npm run demo` has
// just built, and wrangler dev reloads it when build/ changes (`npm run build` elsewhere).

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEMO_API_KEY, DEMO_CLIENT_SECRET, DEMO_CUSTOMER_ID_KEY, DEMO_GATEWAY_SIGNING_KEY, startDemoOrigin } from '../demo/origin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const ORIGIN_PORT = 8788;
const GATEWAY_PORT = 8787;
const GATEWAY = `http://${HOST}:${GATEWAY_PORT}`;

const say = (line = '') => process.stdout.write(`${line}\n`);
const fail = (line) => {
  process.stderr.write(`demo: ${line}\n`);
  process.exit(1);
};

if (!existsSync(path.join(ROOT, 'build/index.js'))) {
  fail('build/index.js is missing: build the Worker first (npm run build), or run npm run demo');
}

let origin;
try {
  origin = await startDemoOrigin({ port: ORIGIN_PORT, host: HOST, log: true });
} catch (err) {
  fail(
    err.code === 'EADDRINUSE'
      ? `port ${ORIGIN_PORT} is in use (another demo running?): stop it and try again`
      : `the demo origin did not start: ${err.message}`,
  );
}
say(`demo origin on ${origin.url} (token endpoint, customer_authenticate, JWKS, getprofile, session_login, introspect)`);

const args = [
  'dev',
  '--config', path.join(ROOT, 'demo/wrangler.toml'),
  '--ip', HOST,
  '--port', String(GATEWAY_PORT),
  '--var', `CLIENT_SECRET:${DEMO_CLIENT_SECRET}`,
  '--var', `API_KEY:${DEMO_API_KEY}`,
  '--var', `CUSTOMER_ID_KEY:${DEMO_CUSTOMER_ID_KEY}`,
  '--var', `GATEWAY_SIGNING_KEY:${DEMO_GATEWAY_SIGNING_KEY}`,
  // The project's usual local state (.wrangler/ at the root, not next to demo/wrangler.toml).
  '--persist-to', path.join(ROOT, '.wrangler/state'),
];
const wrangler = spawn(path.join(ROOT, 'node_modules/.bin/wrangler'), args, {
  cwd: ROOT,
  stdio: 'inherit',
  env: {
    ...process.env,
    WRANGLER_SEND_METRICS: 'false',
    // Local only: no https://workers.cloudflare.com/cf.json, and no banner (whose update check
    // asks the npm registry for wrangler's latest version).
    CLOUDFLARE_CF_FETCH_ENABLED: 'false',
    WRANGLER_HIDE_BANNER: 'true',
  },
});

let stopping = false;
async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  if (wrangler.exitCode === null && wrangler.signalCode === null) {
    wrangler.kill('SIGINT');
    const killer = setTimeout(() => wrangler.kill('SIGKILL'), 5000);
    await new Promise((resolve) => wrangler.once('exit', resolve));
    clearTimeout(killer);
  }
  await origin.close();
  say('demo stopped');
  process.exit(code);
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
wrangler.on('error', (err) => {
  process.stderr.write(`demo: could not start wrangler: ${err.message}\n`);
  stop(1);
});
wrangler.on('exit', (code, signal) => {
  if (!stopping) {
    if (code) process.stderr.write(`demo: wrangler exited (${signal ?? code})\n`);
    stop(code ?? 0);
  }
});

// Print the session to try once the gateway answers.
const deadline = Date.now() + 120_000;
while (!stopping && Date.now() < deadline) {
  try {
    await fetch(`${GATEWAY}/`, { signal: AbortSignal.timeout(1000) });
    break;
  } catch {
    await new Promise((r) => setTimeout(r, 300));
  }
}
if (!stopping) {
  say(`
The gateway is on ${GATEWAY}. In another terminal:

  # log in through the gateway (/auth/customer_authenticate is a public route)
  JWT=$(curl -s -X POST ${GATEWAY}/auth/customer_authenticate \\
    -d 'username=alice&password=alice-password' | node -pe 'JSON.parse(require("fs").readFileSync(0)).JWT')

  # the profile API with the customer JWT: the gateway adds the access token and the api-key
  curl -s -X POST ${GATEWAY}/account/getprofile \\
    -H "customer-auth: JWT $JWT" -H 'content-type: application/json' -d '{}'

  # a bad token never reaches the origin: 401 problem+json
  curl -si -X POST ${GATEWAY}/account/getprofile -H 'customer-auth: JWT not.a.jwt'

  # or a cookie session: log in, keep the cookie, get the profile (the gateway introspects it)
  curl -s -c /tmp/demo-cookies -X POST ${GATEWAY}/auth/session_login -d 'username=bob&password=bob-password'
  curl -s -b /tmp/demo-cookies ${GATEWAY}/session/getprofile

Users: alice / alice-password, bob / bob-password. Ctrl-C stops the gateway and the origin.
`);
}
