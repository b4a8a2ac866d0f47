#!/usr/bin/env node
// `npm run demo` (after the Worker is built): the demo origin on 127.0.0.1:8788 and the gateway
// in `wrangler dev --env demo` on 127.0.0.1:8787, with the demo's secrets passed as --var.
// Ctrl-C (or SIGTERM) stops both.
//
// wrangler dev always runs wrangler.toml's [build] command, and again from its file watcher;
// `npm run demo` has just built the Worker, so this script hands wrangler a generated copy of
// the [env.demo] configuration without [build] (.wrangler/demo/wrangler.json, read from
// wrangler.toml each time, so wrangler.toml stays the only place to edit). Pass --rebuild to
// use wrangler.toml as it is instead, [build] included.

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEMO_API_KEY, DEMO_CLIENT_SECRET, DEMO_CUSTOMER_ID_KEY, DEMO_GATEWAY_SIGNING_KEY, startDemoOrigin } from '../demo/origin.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const ORIGIN_PORT = 8788;
const GATEWAY_PORT = 8787;
const GATEWAY = `http://${HOST}:${GATEWAY_PORT}`;
const rebuild = process.argv.includes('--rebuild');

const say = (line = '') => process.stdout.write(`${line}\n`);
const fail = (line) => {
  process.stderr.write(`demo: ${line}\n`);
  process.exit(1);
};

if (!existsSync(path.join(ROOT, 'build/index.js')) && !rebuild) {
  fail('build/index.js is missing: build the Worker first (npm run build), or run npm run demo');
}

/** wrangler.toml's [env.demo], resolved by wrangler itself, minus [build]. */
function demoConfigWithoutBuild() {
  // In a child process: importing wrangler installs signal handlers that exit at once on
  // SIGINT/SIGTERM, before this script could stop wrangler dev and the origin.
  const read = `import { unstable_readConfig } from 'wrangler';
    const c = unstable_readConfig({ config: 'wrangler.toml', env: 'demo' });
    process.stdout.write(JSON.stringify(c));`;
  const demo = JSON.parse(
    execFileSync(process.execPath, ['--input-type=module', '-e', read], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }),
  );
  const config = {
    name: 'edge-auth-proxy',
    main: path.resolve(ROOT, demo.main ?? 'build/index.js'),
    compatibility_date: demo.compatibility_date,
    compatibility_flags: demo.compatibility_flags ?? [],
    // scripts/build.sh's output is already one bundle: no second bundling either.
    no_bundle: true,
    env: {
      demo: {
        name: demo.name,
        kv_namespaces: demo.kv_namespaces.map(({ binding, id }) => ({ binding, id })),
        vars: demo.vars,
      },
    },
  };
  const dir = path.join(ROOT, '.wrangler/demo');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'wrangler.json');
  writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
  return file;
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

const configArgs = rebuild ? [] : ['--config', demoConfigWithoutBuild()];
const args = [
  'dev',
  ...configArgs,
  '--env', 'demo',
  '--ip', HOST,
  '--port', String(GATEWAY_PORT),
  '--var', `CLIENT_SECRET:${DEMO_CLIENT_SECRET}`,
  '--var', `API_KEY:${DEMO_API_KEY}`,
  '--var', `CUSTOMER_ID_KEY:${DEMO_CUSTOMER_ID_KEY}`,
  '--var', `GATEWAY_SIGNING_KEY:${DEMO_GATEWAY_SIGNING_KEY}`,
  // The project's usual local state, whichever config file wrangler is given.
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
