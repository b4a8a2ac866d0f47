// The deploy path a new user follows (README "Deploy"): the shipped wrangler.toml and the demo's
// file go through `wrangler deploy --dry-run` without a single warning, the template's secrets
// file names every secret the gateway reads with how to make it, copying it as .dev.vars gets
// each value left to fill in named by check-config, and the secrets files stay out of git.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { ROOT, tempDir } from './harness.mjs';

const WRANGLER = path.join(ROOT, 'node_modules/.bin/wrangler');
const ENV = {
  ...process.env,
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  // No banner: its update check asks the npm registry (and says nothing about the config).
  WRANGLER_HIDE_BANNER: 'true',
  NO_COLOR: '1',
};

function run(cmd, args, cwd) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: ENV });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, out }));
  });
}

/** Every secret the reference lists (its settings tables: `| \`NAME\` | secret | …`). */
function secretsOfTheReference() {
  const doc = readFileSync(path.join(ROOT, 'docs/configuration.md'), 'utf8');
  const names = [...doc.matchAll(/^\| `([A-Z0-9_]+)` \| secret \|/gm)].map((m) => m[1]);
  assert.ok(names.length >= 5, `secrets found in docs/configuration.md: ${names}`);
  return [...new Set(names)];
}

const noWarning = (r) => {
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /--dry-run: exiting now\./, r.out);
  assert.doesNotMatch(r.out, /WARNING|▲|warn/i, r.out);
};

describe('deploy', { concurrency: 2 }, () => {
  test('wrangler deploy --dry-run of the shipped wrangler.toml prints no warning', async (t) => {
    // The file verbatim, in a directory whose scripts/build.sh does nothing and whose build/ is
    // the one already built: what is checked is wrangler's reading of the file, in seconds,
    // not a second release build.
    const tmp = tempDir('eap-deploy-');
    t.after(tmp.rm);
    copyFileSync(path.join(ROOT, 'wrangler.toml'), path.join(tmp.dir, 'wrangler.toml'));
    mkdirSync(path.join(tmp.dir, 'scripts'));
    writeFileSync(path.join(tmp.dir, 'scripts/build.sh'), 'exit 0\n');
    symlinkSync(path.join(ROOT, 'build'), path.join(tmp.dir, 'build'));
    const r = await run(WRANGLER, ['deploy', '--dry-run'], tmp.dir);
    noWarning(r);
    assert.match(r.out, /\[custom build\] Running: bash scripts\/build\.sh/);
    assert.match(r.out, /env\.TOKEN_CACHE \(REPLACE_WITH_KV_NAMESPACE_ID\)\s+KV Namespace/);
  });

  test('wrangler deploy --dry-run of the demo (demo/wrangler.toml) prints no warning', async () => {
    noWarning(await run(WRANGLER, ['deploy', '--dry-run', '--config', 'demo/wrangler.toml'], ROOT));
  });

  test('.dev.vars.example lists every secret of the reference, says how to make each, and sets none for real', () => {
    const example = readFileSync(path.join(ROOT, '.dev.vars.example'), 'utf8');
    const toml = readFileSync(path.join(ROOT, 'wrangler.toml'), 'utf8');
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    for (const name of secretsOfTheReference()) {
      // A line of its own, set to a placeholder or commented out with an empty value.
      assert.match(example, new RegExp(`^(${name}=REPLACE_WITH_${name}|# ${name}=)$`, 'm'), `${name} in .dev.vars.example`);
      assert.match(toml, new RegExp(`^#.*\\b${name}\\b`, 'm'), `${name} in wrangler.toml's list of secrets`);
      assert.ok(readme.includes(`npx wrangler secret put ${name}`), `README's deploy steps put ${name}`);
    }
    // Every key the gateway derives from random bytes says how to make them.
    for (const name of ['TOKEN_ENCRYPTION_KEY', 'CUSTOMER_ID_KEY']) {
      const block = example.slice(0, example.indexOf(`# ${name}=`)).split('\n\n').at(-1);
      assert.match(block, /openssl rand -base64 32/, name);
    }
    // Nothing in it is a usable value: each assignment is a placeholder or empty.
    for (const m of example.matchAll(/^([A-Z0-9_]+)=(.*)$/gm)) assert.equal(m[2], `REPLACE_WITH_${m[1]}`);
  });

  test('copied as .dev.vars beside the template, check-config names each secret left to fill in', async (t) => {
    const tmp = tempDir('eap-deploy-');
    t.after(tmp.rm);
    copyFileSync(path.join(ROOT, 'wrangler.toml'), path.join(tmp.dir, 'wrangler.toml'));
    copyFileSync(path.join(ROOT, '.dev.vars.example'), path.join(tmp.dir, '.dev.vars'));
    const r = await run(process.execPath, [path.join(ROOT, 'scripts/check-config.mjs'), '--require-secrets'], tmp.dir);
    assert.equal(r.status, 1, r.out);
    const lines = r.out.split('\n').filter(Boolean);
    for (const name of ['CLIENT_SECRET', 'API_KEY']) {
      assert.ok(lines.includes(`${name} is still the template's placeholder: set it in .dev.vars (and with wrangler secret put ${name})`), r.out);
    }
    assert.ok(!lines.some((l) => l.startsWith('not set here')), r.out);
  });

  test('.dev.vars and its variants are ignored by git; .dev.vars.example is committed', (t) => {
    const inRepo = spawnSync('git', ['rev-parse', '--is-inside-work-tree'], { cwd: ROOT, encoding: 'utf8' });
    if (inRepo.status !== 0) return t.skip('not a git work tree');
    const ignored = (file) => spawnSync('git', ['check-ignore', '-q', '--no-index', file], { cwd: ROOT }).status === 0;
    for (const file of ['.dev.vars', '.dev.vars.staging', '.env', '.env.production', 'demo/.dev.vars']) assert.ok(ignored(file), file);
    assert.ok(!ignored('.dev.vars.example'));
    const tracked = spawnSync('git', ['ls-files', '--error-unmatch', '.dev.vars.example'], { cwd: ROOT });
    assert.equal(tracked.status, 0, '.dev.vars.example is not committed');
  });
});
