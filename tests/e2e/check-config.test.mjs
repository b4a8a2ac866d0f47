// `npm run check-config` on wrangler files, correct and broken, as a new user runs it before a
// deploy: exit codes, every problem named on a line of its own, the environment merged as
// wrangler merges it, secrets from --secrets or .dev.vars, --require-secrets, and no value
// ever printed (recognisable values are planted in vars and secrets and looked for).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { ROOT, tempDir } from './harness.mjs';

const PLANTED = ['Pl4nted-client-id', 'Pl4nted-secret-value', 'Pl4nted-api-key', 'pl4nted-host', 'Pl4nted-route'];

/** Runs the command; resolves `{ status, stdout, stderr, lines }` (stdout's lines). */
async function checkConfig(args, { cwd = ROOT } = {}) {
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts/check-config.mjs'), ...args], {
    cwd,
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const status = await new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  for (const value of PLANTED) assert.ok(!`${stdout}${stderr}`.includes(value), `${value} was printed:\n${stdout}${stderr}`);
  return { status, stdout, stderr, lines: stdout.split('\n').filter(Boolean) };
}

/** A directory with `wrangler.toml` (and any other files) written into it. */
function project(t, files) {
  const tmp = tempDir('eap-check-config-');
  t.after(tmp.rm);
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(tmp.dir, name), text);
  return tmp.dir;
}

const GOOD_VARS = `
ORIGIN_URL = "https://origin.example.com"
TOKEN_URL = "https://idp.example.com/oauth/token"
CLIENT_ID = "Pl4nted-client-id"
JWT_ALGORITHMS = "RS256"
JWKS_URL = "https://login.example.com/jwks.json"
JWT_AUDIENCE = "profile-api"
ROUTES = '''[{ "prefix": "/login", "auth": "public" }, { "prefix": "/account/", "auth": "jwt", "rate_limit": { "binding": "PER_CUSTOMER", "key": "sub" } }]'''
`;

const GOOD = `
name = "gw"
main = "build/index.js"
compatibility_date = "2026-04-01"

[[kv_namespaces]]
binding = "TOKEN_CACHE"
id = "x"

[[ratelimits]]
name = "PER_CUSTOMER"
namespace_id = "1001"
simple = { limit = 100, period = 60 }

[vars]
${GOOD_VARS}
`;

const SECRETS = 'CLIENT_SECRET=Pl4nted-secret-value\nAPI_KEY="Pl4nted-api-key"\n';

// Each run spends most of its time loading wrangler (about 3 s of CPU): they run side by side.
describe('npm run check-config', { concurrency: 4 }, () => {
  test('the shipped template fails on each REPLACE_WITH_ placeholder, one line each, and on nothing else; the demo passes', async () => {
    const template = await checkConfig([]);
    assert.equal(template.status, 1, template.stdout);
    assert.deepEqual(template.lines, [
      ...['ORIGIN_URL', 'TOKEN_URL', 'CLIENT_ID', 'JWKS_URL', 'JWT_ISSUER', 'JWT_AUDIENCE'].map(
        (name) => `${name} is still the template's placeholder: set it in [vars] of wrangler.toml`,
      ),
      "routes[0].pattern is still the template's placeholder: set it in wrangler.toml",
      "routes[0].zone_name is still the template's placeholder: set it in wrangler.toml",
      "kv_namespaces[TOKEN_CACHE].id is still the template's placeholder: npx wrangler kv namespace create TOKEN_CACHE prints the id to put in wrangler.toml",
      'not set here: API_KEY (wrangler secret put API_KEY)',
      'not set here: CLIENT_SECRET (wrangler secret put CLIENT_SECRET)',
    ]);

    const demo = await checkConfig(['--config', path.join(ROOT, 'demo/wrangler.toml')]);
    assert.equal(demo.status, 0, `${demo.stdout}${demo.stderr}`);
    assert.match(demo.lines.at(-1), /^configuration ok: 6 routes \(2 public, 3 jwt, 1 opaque\)/);
    for (const name of ['API_KEY', 'CLIENT_SECRET', 'CUSTOMER_ID_KEY', 'GATEWAY_SIGNING_KEY']) {
      assert.ok(demo.lines.includes(`not set here: ${name} (wrangler secret put ${name})`), demo.stdout);
    }
  });

  test('the template filled in passes: every placeholder replaced is one line fewer', async (t) => {
    const filled = readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8')
      .replace('REPLACE_WITH_ORIGIN_URL', 'https://origin.example.com')
      .replace('REPLACE_WITH_TOKEN_URL', 'https://login.example.com/oauth/token')
      .replace('REPLACE_WITH_CLIENT_ID', 'Pl4nted-client-id')
      .replace('REPLACE_WITH_JWKS_URL', 'https://login.example.com/jwks.json')
      .replace('REPLACE_WITH_ISSUER', 'https://login.example.com/')
      .replace('REPLACE_WITH_AUDIENCE', 'profile-api')
      .replace('REPLACE_WITH_API_HOST', 'api.example.com')
      .replace('REPLACE_WITH_ZONE_NAME', 'example.com');
    const almost = project(t, { 'wrangler.toml': filled, '.dev.vars': SECRETS });
    const one = await checkConfig(['--config', path.join(almost, 'wrangler.toml'), '--require-secrets']);
    assert.equal(one.status, 1, one.stdout);
    assert.deepEqual(one.lines, [
      "kv_namespaces[TOKEN_CACHE].id is still the template's placeholder: npx wrangler kv namespace create TOKEN_CACHE prints the id to put in wrangler.toml",
    ]);
    const done = project(t, { 'wrangler.toml': filled.replace('REPLACE_WITH_KV_NAMESPACE_ID', '0f2ac74b498b48028cb68387c421e279'), '.dev.vars': SECRETS });
    const ok = await checkConfig(['--config', path.join(done, 'wrangler.toml'), '--require-secrets']);
    assert.equal(ok.status, 0, ok.stdout);
    assert.deepEqual(ok.lines, [
      `configuration ok: 2 routes (1 public, 1 jwt), keys from JWKS_URL, TOKEN_COORDINATOR not bound, secrets from ${path.relative(ROOT, path.join(done, '.dev.vars'))}`,
    ]);
  });

  test('a placeholder anywhere is named, never shown, and is the only line for its setting', async (t) => {
    // In a var that would also fail its own check (not a URL), a var inside an environment, a
    // binding's id, a route, a secret (the copied .dev.vars.example), and next to a real value.
    const withEnv = `${GOOD.replace('https://origin.example.com', 'REPLACE_WITH_pl4nted-host')}
[env.staging]
routes = [{ pattern = "REPLACE_WITH_HOST/*", zone_name = "example.com" }]
kv_namespaces = [{ binding = "TOKEN_CACHE", id = "REPLACE_WITH_KV_NAMESPACE_ID" }]
ratelimits = [{ name = "PER_CUSTOMER", namespace_id = "1001", simple = { limit = 100, period = 60 } }]

[env.staging.vars]
${GOOD_VARS.replace('"Pl4nted-client-id"', '"Pl4nted-client-id REPLACE_WITH_CLIENT_ID"')}
`;
    const dir = project(t, { 'wrangler.toml': withEnv, '.dev.vars': 'CLIENT_SECRET=REPLACE_WITH_Pl4nted-secret-value\nAPI_KEY=Pl4nted-api-key\n' });
    const top = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(top.status, 1, top.stdout);
    assert.deepEqual(top.lines, [
      "ORIGIN_URL is still the template's placeholder: set it in [vars] of wrangler.toml",
      `CLIENT_SECRET is still the template's placeholder: set it in ${path.relative(ROOT, path.join(dir, '.dev.vars'))} (and with wrangler secret put CLIENT_SECRET)`,
    ]);
    const staging = await checkConfig(['--config', path.join(dir, 'wrangler.toml'), '--env', 'staging', '--secrets', path.join(dir, '.dev.vars')]);
    assert.equal(staging.status, 1, staging.stdout);
    assert.deepEqual(staging.lines, [
      "CLIENT_ID is still the template's placeholder: set it in [vars] of [env.staging] of wrangler.toml",
      `CLIENT_SECRET is still the template's placeholder: set it in ${path.join(dir, '.dev.vars')} (and with wrangler secret put CLIENT_SECRET --env staging)`,
      "routes[0].pattern is still the template's placeholder: set it in [env.staging] of wrangler.toml",
      "kv_namespaces[TOKEN_CACHE].id is still the template's placeholder: npx wrangler kv namespace create TOKEN_CACHE prints the id to put in [env.staging] of wrangler.toml",
    ]);
    for (const r of [top, staging]) assert.ok(!r.stdout.includes('REPLACE_WITH'), r.stdout);
  });

  test('--require-secrets makes a required secret not given a failure, listed; given in --secrets, it passes', async (t) => {
    const dir = project(t, { 'wrangler.toml': GOOD, 'prod.secrets': SECRETS });
    const missing = await checkConfig(['--config', path.join(dir, 'wrangler.toml'), '--require-secrets']);
    assert.equal(missing.status, 1, missing.stdout);
    assert.deepEqual(missing.lines, [
      'not set here: API_KEY (wrangler secret put API_KEY)',
      'not set here: CLIENT_SECRET (wrangler secret put CLIENT_SECRET)',
    ]);
    const given = await checkConfig(['--config', path.join(dir, 'wrangler.toml'), '--secrets', path.join(dir, 'prod.secrets'), '--require-secrets']);
    assert.equal(given.status, 0, given.stdout);
    assert.equal(given.lines.length, 1);
    assert.match(given.lines[0], /^configuration ok: 2 routes \(1 public, 1 jwt\), keys from JWKS_URL, 1 rate-limiting binding, TOKEN_COORDINATOR not bound, secrets from /);
  });

  test('three mistakes: every one named on its own line, exit 1, no value printed', async (t) => {
    const broken = GOOD.replace('JWT_AUDIENCE =', 'JWT_AUDIENCES =')
      .replace('https://idp.example.com/oauth/token', 'http://pl4nted-host.example.com/oauth/token')
      .replace('"auth": "public" }', '"auth": "public", "method": ["POST"] }');
    const dir = project(t, { 'wrangler.toml': broken, '.dev.vars': SECRETS });
    const r = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(r.status, 1, r.stdout);
    assert.deepEqual(r.lines, [
      'ROUTES[0]: unknown field "method"; did you mean "methods"?',
      'TOKEN_URL must be an https URL (plain http only to a loopback host: localhost, 127.0.0.0/8, [::1])',
      'JWT_AUDIENCES is an unknown setting; did you mean JWT_AUDIENCE?',
    ]);
  });

  test('bind and client_certificate are checked: every problem named by route and field, never a value', async (t) => {
    const routes = (list) => GOOD.replace(/^ROUTES = .*$/m, `ROUTES = '''${JSON.stringify(list)}'''`);
    const good = project(t, {
      'wrangler.toml': routes([
        { prefix: '/partner/', auth: 'public', client_certificate: { required: true, subjects: ['CN=partner-prod,O=Partner'] } },
        { prefix: '/accounts/', auth: 'jwt', bind: [{ path_segment: 2, claim: 'sub' }, { header: 'x-account-id', claim: 'accounts' }] },
      ]),
      '.dev.vars': SECRETS,
    });
    const ok = await checkConfig(['--config', path.join(good, 'wrangler.toml')]);
    assert.equal(ok.status, 0, ok.stdout);
    assert.match(ok.lines[0], /^configuration ok: 2 routes/);
    const bad = project(t, {
      'wrangler.toml': routes([
        { prefix: '/a/', auth: 'public', bind: { path_segment: 2, claim: 'sub' } },
        { prefix: '/b/', bind: { path_segment: 0, claim: 'sub' } },
        { prefix: '/c/', bind: { heder: 'x-account-id', claim: 'sub' } },
        { prefix: '/d/', client_certificate: { required: false } },
        { prefix: '/e/', client_certificate: { required: true, fingerprints_sha256: ['Pl4nted-route'] } },
      ]),
      '.dev.vars': SECRETS,
    });
    const r = await checkConfig(['--config', path.join(bad, 'wrangler.toml')]);
    assert.equal(r.status, 1, r.stdout);
    assert.deepEqual(r.lines, [
      'ROUTES[0].bind: needs a verified identity: it applies to jwt, optional, report and opaque routes only',
      'ROUTES[1].bind.path_segment: must be a whole number from 1 to 128 (1: the path\'s first segment)',
      'ROUTES[2].bind: unknown field "heder"; did you mean "header"?',
      'ROUTES[3].client_certificate.required: must be true (a route that does not require a certificate leaves client_certificate out)',
      'ROUTES[4].client_certificate.fingerprints_sha256: must hold SHA-256 fingerprints: 64 hex digits each, colons allowed',
    ]);
  });

  test('a secret given but unusable is a problem, its value never shown; .dev.vars is read by default', async (t) => {
    const dir = project(t, { 'wrangler.toml': GOOD, '.dev.vars': 'CLIENT_SECRET=Pl4nted-secret-value\nAPI_KEY="Pl4nted-api-key\u00a0"\nCLIENT_SECERT=Pl4nted-secret-value\n' });
    const r = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(r.status, 1, r.stdout);
    assert.equal(r.lines.length, 2, r.stdout);
    assert.match(r.lines[0], /^API_KEY must be visible ASCII/);
    assert.equal(r.lines[1], 'CLIENT_SECERT is an unknown setting; did you mean CLIENT_SECRET?');
  });

  test('bindings are checked from the file: missing, of the wrong kind, or under an unknown name', async (t) => {
    const broken = GOOD.replace('[[kv_namespaces]]\nbinding = "TOKEN_CACHE"\nid = "x"', '[[kv_namespaces]]\nbinding = "TOKEN_COORDINATOR"\nid = "x"')
      .replace('name = "PER_CUSTOMER"', 'name = "PER_CUSTOMR"')
      + '\n[[analytics_engine_datasets]]\nbinding = "METRICS_DATASET"\ndataset = "gw"\n';
    const dir = project(t, { 'wrangler.toml': broken, '.dev.vars': SECRETS });
    const r = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(r.status, 1, r.stdout);
    assert.deepEqual(r.lines, [
      'TOKEN_COORDINATOR must be a Durable Object namespace binding, but another kind of binding is bound under that name',
      'METRICS_DATASET is an unknown setting: the gateway has no setting of that name (see docs/configuration.md)',
      'TOKEN_CACHE is required but not bound: it must be a KV namespace binding',
      'ROUTES[1].rate_limit.binding: no rate-limiting binding named PER_CUSTOMER is bound ([[ratelimits]] name = "PER_CUSTOMER" in wrangler.toml); did you mean PER_CUSTOMR?',
    ]);
  });

  test('METRICS is accepted as an Analytics Engine dataset and refused bound as anything else', async (t) => {
    const dataset = `${GOOD}\n[[analytics_engine_datasets]]\nbinding = "METRICS"\ndataset = "gw_metrics"\n`;
    const kv = `${GOOD}\n[[kv_namespaces]]\nbinding = "METRICS"\nid = "y"\n`;
    const [ok, wrong] = await Promise.all(
      [dataset, kv].map((text) => {
        const dir = project(t, { 'wrangler.toml': text, '.dev.vars': SECRETS });
        return checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
      }),
    );
    assert.equal(ok.status, 0, ok.stdout + ok.stderr);
    assert.match(ok.lines.at(-1), /^configuration ok: /);
    assert.equal(wrong.status, 1, wrong.stdout);
    assert.deepEqual(wrong.lines, ['METRICS must be an Analytics Engine dataset binding, but another kind of binding is bound under that name']);
  });

  test('--env checks the environment as wrangler merges it (vars and bindings not inherited), and reads .dev.vars.<env>', async (t) => {
    const stagingVars = GOOD_VARS.replace(/^ROUTES = .*$/m, `ROUTES = '[{ "prefix": "/login", "auth": "public" }, { "prefix": "/account/", "auth": "Pl4nted-route" }]'`);
    const withEnv = `${GOOD}
[env.staging]
kv_namespaces = [{ binding = "TOKEN_CACHE", id = "y" }]

[env.staging.vars]
${stagingVars}
`;
    const dir = project(t, { 'wrangler.toml': withEnv, '.dev.vars.staging': SECRETS });
    const top = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(top.status, 0, top.stdout);
    assert.ok(top.lines.includes('not set here: CLIENT_SECRET (wrangler secret put CLIENT_SECRET)'), top.stdout);
    const staging = await checkConfig(['--config', path.join(dir, 'wrangler.toml'), '--env', 'staging', '--require-secrets']);
    assert.equal(staging.status, 1, staging.stdout);
    assert.deepEqual(staging.lines, ['ROUTES[1].auth: must be one of jwt, public, optional, report, opaque']);
    const unknownEnv = await checkConfig(['--config', path.join(dir, 'wrangler.toml'), '--env', 'prod']);
    assert.equal(unknownEnv.status, 2, unknownEnv.stderr);
  });

  test('a secret written into [vars], a setting given as a TOML table', async (t) => {
    const broken = GOOD.replace('[vars]\n', '[vars]\nCLIENT_SECRET = "Pl4nted-secret-value"\nJWT_ISSUER = { url = "https://pl4nted-host.example" }\n');
    const dir = project(t, { 'wrangler.toml': broken, '.dev.vars': 'API_KEY=Pl4nted-api-key\n' });
    const r = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(r.status, 1, r.stdout);
    assert.deepEqual(r.lines, [
      'CLIENT_SECRET is a secret: remove it from [vars] and set it with wrangler secret put CLIENT_SECRET',
      'JWT_ISSUER must be a string: in [vars] write JWT_ISSUER = "..." (a TOML table, array, number or boolean reaches the Worker as JSON, not text)',
    ]);
  });

  test('private_key_jwt: CLIENT_PRIVATE_KEY is the secret to set, a CLIENT_SECRET left set is a note, TOKEN_PARAMS reserved names fail', async (t) => {
    const key = JSON.stringify({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', d: 'nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A' });
    const toml = GOOD.replace('[vars]', '[vars]\nTOKEN_CLIENT_AUTH = "private_key_jwt"');
    const dir = project(t, { 'wrangler.toml': toml, 'none.secrets': 'API_KEY=Pl4nted-api-key\n', 'all.secrets': `${SECRETS}CLIENT_PRIVATE_KEY=${key}\n` });
    const cfg = ['--config', path.join(dir, 'wrangler.toml')];
    const missing = await checkConfig([...cfg, '--secrets', path.join(dir, 'none.secrets'), '--require-secrets']);
    assert.equal(missing.status, 1, missing.stdout);
    assert.deepEqual(missing.lines, ['not set here: CLIENT_PRIVATE_KEY (wrangler secret put CLIENT_PRIVATE_KEY)']);
    const noted = await checkConfig([...cfg, '--secrets', path.join(dir, 'all.secrets'), '--require-secrets']);
    assert.equal(noted.status, 0, noted.stdout);
    assert.equal(noted.lines.length, 2, noted.stdout);
    assert.match(noted.lines[0], /^note: CLIENT_SECRET is set but never sent: TOKEN_CLIENT_AUTH is private_key_jwt/);
    assert.match(noted.lines[1], /^configuration ok: /);
    assert.ok(!noted.stdout.includes('nWGxne'), 'the key is never printed');
    writeFileSync(path.join(dir, 'wrangler.toml'), toml.replace('[vars]', '[vars]\nTOKEN_PARAMS = "resource=https%3A%2F%2Fapi&client_assertion=x"'));
    const reserved = await checkConfig([...cfg, '--secrets', path.join(dir, 'all.secrets')]);
    assert.equal(reserved.status, 1, reserved.stdout);
    assert.ok(reserved.lines.includes('TOKEN_PARAMS may not set "client_assertion": the gateway sends it itself (per TOKEN_CLIENT_AUTH)'), reserved.stdout);
  });

  test("a provider's introspect: counted on the ok line; without url and discovery, or with an unknown field, named, never shown", async (t) => {
    const providers = (introspect) => JSON.stringify([{ issuer: 'https://login.example.com/', jwks_url: 'https://login.example.com/jwks.json', introspect }]);
    const toml = (introspect) => GOOD.replace(/^JWKS_URL = .*$/m, '').replace(/^JWT_AUDIENCE = .*$/m, `JWT_PROVIDERS = '${providers(introspect)}'`);
    const dir = project(t, { 'wrangler.toml': toml({ url: 'https://pl4nted-host.example/introspect', max_age_seconds: 30 }), '.dev.vars': SECRETS });
    const cfg = ['--config', path.join(dir, 'wrangler.toml')];
    const ok = await checkConfig(cfg);
    assert.equal(ok.status, 0, ok.stdout);
    assert.match(ok.lines.at(-1), /1 identity provider, introspect on 1 of them,/);
    writeFileSync(path.join(dir, 'wrangler.toml'), toml({ max_age: 30 }));
    const bad = await checkConfig(cfg);
    assert.equal(bad.status, 1, bad.stdout);
    assert.ok(bad.lines.some((l) => l.startsWith('JWT_PROVIDERS[0].introspect: has no url, and the provider has no discovery document')), bad.stdout);
    assert.ok(bad.lines.some((l) => l.startsWith('JWT_PROVIDERS[0].introspect: unknown field "max_age"')), bad.stdout);
  });

  test('a file wrangler cannot read: exit 2, where, not what', async (t) => {
    const dir = project(t, { 'wrangler.toml': `${GOOD}\nAPI_KEY = "Pl4nted-api-key\n` });
    const r = await checkConfig(['--config', path.join(dir, 'wrangler.toml')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /is not valid TOML/);
    const usage = await checkConfig(['--nope']);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /usage: npm run check-config/);
  });
});
