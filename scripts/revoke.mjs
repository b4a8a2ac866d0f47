#!/usr/bin/env node
// npm run revoke -- --iss ISS --sub SUB [--at UNIX] [--env NAME] [--local [--persist-to DIR]] [--config PATH]
// npm run revoke -- --list [--iss ISS --sub SUB] [--env NAME] [--local …]
// npm run revoke -- --remove --iss ISS --sub SUB [--env NAME] [--local …]
//
// The subject-wide cut-off (docs/configuration.md, "Revocation"): writes the KV entry
// `revoked:v1:<base64url SHA-256 of iss "\n" sub>` holding a Unix time in seconds (default:
// now) into the gateway's TOKEN_CACHE namespace with `wrangler kv key put`; every JWT of that
// subject issued (`iat`) before it is then refused, within KV's propagation plus 60 s.
// `--local`: the local KV that `wrangler dev` uses (under .wrangler/state, or --persist-to);
// otherwise the deployed namespace (`--remote`). `--list` prints the entries (all, or the one
// subject's), `--remove` deletes one. It handles no token and prints only keys and times.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The KV binding the gateway reads (src/platform/kv.rs, wrangler.toml's kv_namespaces). */
export const BINDING = 'TOKEN_CACHE';
export const PREFIX = 'revoked:v1:';

const USAGE = `usage: npm run revoke -- --iss ISS --sub SUB [--at UNIX] [--env NAME] [--local] [--persist-to DIR] [--config PATH]
       npm run revoke -- --list [--iss ISS --sub SUB] [--env NAME] [--local] …
       npm run revoke -- --remove --iss ISS --sub SUB [--env NAME] [--local] …
  --iss, --sub     the subject's issuer (the tokens' exact iss) and subject (sub)
  --at UNIX        the cut-off, Unix seconds (default: now); tokens with iat before it are refused
  --env NAME       the wrangler environment ([env.NAME]) whose TOKEN_CACHE to use
  --local          the local KV of wrangler dev (default: the deployed namespace)
  --persist-to DIR with --local: wrangler's state directory (default .wrangler/state)
  --config PATH    the wrangler file (default: wrangler.toml here)
  --list           print the cut-offs (key and time), or the one of --iss/--sub
  --remove         delete the cut-off of --iss/--sub`;

/** The contract's key of a subject. */
export function cutoffKey(iss, sub) {
  return PREFIX + createHash('sha256').update(`${iss}\n${sub}`).digest('base64url');
}

class UsageError extends Error {}

export function parseArgs(argv, now = Math.floor(Date.now() / 1000)) {
  const args = { mode: 'put', local: false };
  const takes = { '--iss': 'iss', '--sub': 'sub', '--at': 'at', '--env': 'env', '--persist-to': 'persistTo', '--config': 'config' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    if (Object.hasOwn(takes, flag)) {
      const value = inline ?? argv[++i];
      if (value === undefined || value === '') throw new UsageError(`${flag} needs a value`);
      args[takes[flag]] = value;
    } else if (flag === '--local') args.local = true;
    else if (flag === '--list') args.mode = 'list';
    else if (flag === '--remove') args.mode = 'remove';
    else if (flag === '--help' || flag === '-h') args.mode = 'help';
    else throw new UsageError(`unknown argument ${JSON.stringify(flag)}`);
  }
  if (args.persistTo && !args.local) throw new UsageError('--persist-to goes with --local');
  const subject = args.iss !== undefined || args.sub !== undefined;
  if (subject && (args.iss === undefined || args.sub === undefined)) throw new UsageError('give --iss and --sub together');
  if ((args.mode === 'put' || args.mode === 'remove') && !subject) throw new UsageError('--iss and --sub are required');
  if (args.at !== undefined && args.mode !== 'put') throw new UsageError('--at only when writing');
  if (args.mode === 'put') {
    if (args.at === undefined) args.at = String(now);
    if (!/^\d{1,15}$/.test(args.at)) throw new UsageError('--at must be a Unix time in seconds (digits only)');
  }
  return args;
}

/** The wrangler arguments shared by every command: binding, environment, where. */
function target(args) {
  const out = ['--binding', BINDING];
  if (args.env) out.push('--env', args.env);
  if (args.config) out.push('--config', args.config);
  if (args.local) {
    out.push('--local');
    if (args.persistTo) out.push('--persist-to', args.persistTo);
  } else out.push('--remote');
  return out;
}

function wrangler(argv) {
  const local = path.join(ROOT, 'node_modules', '.bin', 'wrangler');
  const [cmd, pre] = existsSync(local) ? [local, []] : ['npx', ['wrangler']];
  const r = spawnSync(cmd, [...pre, ...argv], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, WRANGLER_SEND_METRICS: 'false', FORCE_COLOR: '0' },
  });
  if (r.status !== 0) {
    // wrangler's own message names the namespace or the login problem; it holds no token.
    process.stderr.write(r.stderr || r.stdout || String(r.error));
    throw new Error(`wrangler ${argv.slice(0, 3).join(' ')} failed`);
  }
  return r.stdout;
}

const when = (secs) => `${secs} (${new Date(Number(secs) * 1000).toISOString()})`;

export function run(args, log = (line) => process.stdout.write(`${line}\n`)) {
  if (args.mode === 'help') return log(USAGE);
  const where = `${BINDING}${args.env ? ` of --env ${args.env}` : ''}${args.local ? ' (local)' : ''}`;
  if (args.mode === 'put') {
    const key = cutoffKey(args.iss, args.sub);
    wrangler(['kv', 'key', 'put', key, args.at, ...target(args)]);
    log(`wrote ${key} = ${when(args.at)} in ${where}`);
    log('tokens of this subject issued before then are refused within KV propagation plus 60 s');
    return;
  }
  if (args.mode === 'remove') {
    const key = cutoffKey(args.iss, args.sub);
    wrangler(['kv', 'key', 'delete', key, ...target(args)]);
    log(`removed ${key} from ${where}`);
    return;
  }
  const keys = args.iss !== undefined
    ? [cutoffKey(args.iss, args.sub)]
    : JSON.parse(wrangler(['kv', 'key', 'list', '--prefix', PREFIX, ...target(args)]).trim() || '[]').map((k) => k.name);
  let found = 0;
  for (const key of keys) {
    const value = wrangler(['kv', 'key', 'get', key, '--text', ...target(args)]).trim();
    // `kv key get` prints "Value not found" for a missing key.
    if (!/^\d+$/.test(value)) continue;
    found++;
    log(`${key} ${when(value)}`);
  }
  if (found === 0) log(`no cut-off in ${where}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    run(parseArgs(process.argv.slice(2)));
  } catch (err) {
    process.stderr.write(`revoke: ${err.message}\n`);
    if (err instanceof UsageError) process.stderr.write(`${USAGE}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  }
}
