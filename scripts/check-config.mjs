#!/usr/bin/env node
// npm run check-config [-- --env NAME] [--config PATH] [--secrets PATH] [--require-secrets]
//
// Checks a wrangler file's configuration of the gateway before a deploy: everything the
// Worker checks on its first request, with the gateway's own code (src/config/check.rs, run
// natively with cargo). This script only reads: the wrangler file with wrangler's own reader
// (so environments merge exactly as wrangler deploy merges them), and the secrets, from
// --secrets or as `wrangler dev` finds them, read by wrangler too (.dev.vars.<env> or
// .dev.vars, else the .env files).
//
// Prints every problem on a line of its own, naming the setting and never a value, and exits
// 1 if there is any; else one line `configuration ok: …` and 0. Exit 2: the command itself
// could not run (bad arguments, an unreadable wrangler file).

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import util from 'node:util';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const USAGE = `usage: npm run check-config -- [--env NAME] [--config PATH] [--secrets PATH] [--require-secrets]
  --env NAME         check the wrangler environment NAME ([env.NAME])
  --config PATH      the wrangler file (default: wrangler.toml here)
  --secrets PATH     a file of NAME=value lines holding the secrets (default: what wrangler dev
                     reads next to the wrangler file: .dev.vars.NAME with --env, .dev.vars, else .env)
  --require-secrets  a required secret not given is a failure (default: a note)`;

function fail(message) {
  process.stderr.write(`check-config: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { env: undefined, config: undefined, secrets: undefined, requireSecrets: false };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => {
      if (inline !== undefined) return inline;
      const next = argv[++i];
      if (next === undefined || next.startsWith('--')) fail(`${flag} needs a value\n${USAGE}`);
      return next;
    };
    switch (flag) {
      case '--env':
      case '-e':
        args.env = value();
        break;
      case '--config':
      case '-c':
        args.config = value();
        break;
      case '--secrets':
        args.secrets = value();
        break;
      case '--require-secrets':
        args.requireSecrets = true;
        break;
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        fail(`unknown argument ${flag}\n${USAGE}`);
    }
  }
  return args;
}

/** `NAME=value` lines, as dotenv (and so wrangler) reads them. */
function readSecretsFile(file) {
  let text;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    fail(`cannot read the secrets file ${file} (${err.code ?? 'error'})`);
  }
  if (typeof util.parseEnv === 'function') return util.parseEnv(text);
  const out = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^\s*(?:export\s+)?([\w.-]+)\s*=\s*(.*)?\s*$/.exec(line);
    if (!m || line.trimStart().startsWith('#')) continue;
    let v = (m[2] ?? '').trim();
    if (/^(['"`]).*\1$/s.test(v)) v = v.slice(1, -1);
    out[m[1]] = v;
  }
  return out;
}

/** Every binding the configuration declares, with its kind as the checker names them. */
function declaredBindings(config) {
  const out = [];
  const add = (name, kind) => {
    if (typeof name === 'string' && name !== '') out.push({ name, kind });
  };
  for (const b of config.kv_namespaces ?? []) add(b.binding, 'kv');
  for (const b of config.durable_objects?.bindings ?? []) add(b.name, 'durable_object');
  for (const b of config.ratelimits ?? []) add(b.name, 'ratelimit');
  for (const b of config.unsafe?.bindings ?? []) add(b.name, b.type === 'ratelimit' ? 'ratelimit' : 'other');
  for (const b of config.analytics_engine_datasets ?? []) add(b.binding, 'analytics_engine');
  // Every other kind of binding wrangler knows, so that a setting's name taken by one is seen.
  for (const key of ['r2_buckets', 'd1_databases', 'services', 'vectorize', 'hyperdrive', 'dispatch_namespaces',
    'mtls_certificates', 'workflows', 'secrets_store_secrets', 'pipelines', 'send_email', 'worker_loaders',
    'vpc_services', 'ai_search_namespaces']) {
    for (const b of config[key] ?? []) add(b.binding ?? b.name, 'other');
  }
  for (const b of config.queues?.producers ?? []) add(b.binding, 'other');
  for (const key of ['ai', 'browser', 'images', 'version_metadata', 'assets', 'media', 'stream']) {
    add(config[key]?.binding, 'other');
  }
  return out;
}

const PLACEHOLDER = /REPLACE_WITH_/;

/**
 * Every setting whose value still holds one of the template's `REPLACE_WITH_…` (wrangler.toml
 * ships them for what each user must fill in), named by where it is, never by its value, with
 * what to do about it. The whole file is looked at, not only [vars]: a KV id, a route.
 */
function placeholders(config, secrets, { configName, env, secretsFile }) {
  const out = [];
  const where = env ? `[env.${env}] of ${configName}` : configName;
  for (const [name, value] of Object.entries(config.vars ?? {})) {
    if (PLACEHOLDER.test(JSON.stringify(value))) out.push({ setting: name, hint: `set it in [vars] of ${where}` });
  }
  for (const [name, value] of Object.entries(secrets)) {
    if (PLACEHOLDER.test(String(value))) {
      out.push({ setting: name, hint: `set it in ${secretsFile ?? 'the secrets file'} (and with wrangler secret put ${name}${env ? ` --env ${env}` : ''})` });
    }
  }
  for (const [key, value] of Object.entries(config)) {
    if (key === 'vars' || key === 'configPath' || key === 'userConfigPath' || key === 'topLevelName') continue;
    walk(value, key);
  }
  function walk(value, at) {
    if (typeof value === 'string') {
      if (PLACEHOLDER.test(value)) out.push({ setting: at, hint: hintFor(at) });
    } else if (Array.isArray(value)) {
      // A binding is named by its binding name rather than its index.
      value.forEach((v, i) => walk(v, `${at}[${typeof v?.binding === 'string' ? v.binding : typeof v?.name === 'string' ? v.name : i}]`));
    } else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) walk(v, `${at}.${k}`);
    }
  }
  function hintFor(at) {
    const kv = /^kv_namespaces\[(.*)\]\.id$/.exec(at);
    if (kv) return `npx wrangler kv namespace create ${kv[1]} prints the id to put in ${where}`;
    return `set it in ${where}`;
  }
  return out;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const configPath = path.resolve(args.config ?? 'wrangler.toml');
  if (!existsSync(configPath)) fail(`no wrangler file at ${path.relative(process.cwd(), configPath) || configPath}`);

  const wrangler = await import('wrangler');
  let config;
  try {
    config = wrangler.unstable_readConfig({ config: configPath, env: args.env }, { hideWarnings: true });
  } catch (err) {
    // wrangler's messages quote the offending values (`got {"binding":5}`, a TOML line):
    // only where, and how to see the rest.
    const where = err?.location ? ` at line ${err.location.line}, column ${err.location.column}` : '';
    const kind = err?.name === 'ParseError' ? 'is not valid TOML' : 'is not a configuration wrangler accepts';
    const env = args.env ? ` --env ${args.env}` : '';
    fail(`${path.basename(configPath)}${args.env ? ` (env ${args.env})` : ''} ${kind}${where}; run npx wrangler deploy --dry-run${env} to see wrangler's own message`);
  }

  let secrets = {};
  let secretsFile = null;
  if (args.secrets !== undefined) {
    secrets = readSecretsFile(path.resolve(args.secrets));
    secretsFile = args.secrets;
  } else {
    // What `wrangler dev` would give the Worker as secrets, read by wrangler: .dev.vars.<env>
    // or .dev.vars next to the wrangler file, else the .env files.
    const found = wrangler.unstable_getVarsForDev(configPath, undefined, {}, args.env, true);
    secrets = Object.fromEntries(Object.entries(found).map(([k, v]) => [k, v?.value]));
    const dir = path.dirname(configPath);
    const files = [...(args.env ? [`.dev.vars.${args.env}`] : []), '.dev.vars', '.env'].map((f) => path.join(dir, f));
    const file = files.find((f) => existsSync(f));
    if (file) secretsFile = path.relative(process.cwd(), file) || file;
  }

  const input = {
    env: args.env ?? null,
    vars: config.vars ?? {},
    secrets: Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k, String(v)])),
    secrets_file: secretsFile,
    bindings: declaredBindings(config),
    require_secrets: args.requireSecrets,
    placeholders: placeholders(config, secrets, { configName: path.basename(configPath), env: args.env, secretsFile }),
  };

  // The checker, natively. `cargo run` rebuilds it when the gateway's code changed (the first
  // time, a debug build of the crate: about a minute), and is a no-op otherwise.
  const cargoHome = process.env.CARGO_HOME ?? path.join(os.homedir(), '.cargo');
  const env = { ...process.env, PATH: `${path.join(cargoHome, 'bin')}${path.delimiter}${process.env.PATH ?? ''}` };
  const run = spawnSync(
    'cargo',
    ['run', '--quiet', '--manifest-path', path.join(ROOT, 'Cargo.toml'), '--bin', 'check-config'],
    { input: JSON.stringify(input), stdio: ['pipe', 'inherit', 'inherit'], env },
  );
  if (run.error) fail(`cannot run cargo (${run.error.code ?? run.error.message}): install Rust, see README.md`);
  process.exit(run.status ?? 2);
}

await main();
