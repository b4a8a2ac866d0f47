// A loopback RFC 7662 introspection endpoint for the end-to-end tests (and the benchmark): it
// knows a set of sessions, checks the caller's client authentication, and counts its calls.

import { randomBytes } from 'node:crypto';

import { listen, stampAnswer } from './servers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function readText(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

/** RFC 6749 §2.3.1: form-urlencoded id and secret, then base64. */
function basicCredentials(header) {
  const m = /^Basic\s+(\S+)$/i.exec(header || '');
  if (!m) return null;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i < 0) return null;
  const unform = (x) => decodeURIComponent(x.replace(/\+/g, ' '));
  return { id: unform(text.slice(0, i)), secret: unform(text.slice(i + 1)) };
}

/**
 * The endpoint at `/introspect`. `sessions`: a Map from identifier to the answer's members
 * (`active: true` is added). Unknown identifiers get `{"active": false}`. Every call is
 * recorded as `{ headers, form, authMethod, token, url, at, doneAt, status, active }` (`at`,
 * `doneAt`: arrival and end of the answer, epoch ms; `status` 0 for a dropped connection);
 * `callsFor(id)` counts one identifier's. A query on the URL is ignored (a caller may tag its
 * calls with one).
 *
 * Modes (`setMode`): 'ok', 'slow' (answers after `delayMs`), '500', 'garbage' (200, HTML),
 * 'down' (drops the connection).
 */
export async function startIntrospection({ clientId, clientSecret, issuer = 'https://issuer.test/', mode = 'ok', delayMs = 0 } = {}) {
  const sessions = new Map();
  const calls = [];
  const opts = { mode, delayMs };
  const s = await listen(async (req, res) => {
    const at = Date.now();
    const raw = await readText(req);
    const form = Object.fromEntries(new URLSearchParams(raw));
    const basic = basicCredentials(req.headers.authorization);
    const rec = {
      method: req.method,
      headers: { ...req.headers },
      body: raw,
      form,
      authMethod: basic ? 'basic' : form.client_secret !== undefined ? 'post' : 'none',
      token: form.token,
      url: req.url,
      at,
    };
    calls.push(rec);
    stampAnswer(res, rec);
    if (opts.delayMs > 0) await sleep(opts.delayMs);
    if (res.destroyed) return;
    const json = (status, obj) => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(obj));
    };
    switch (opts.mode) {
      case 'down':
        req.socket.destroy();
        return;
      case '500':
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('internal error');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><body>Service temporarily unavailable</body></html>');
        return;
      default:
    }
    const id = basic ? basic.id : form.client_id;
    const secret = basic ? basic.secret : form.client_secret;
    if (req.method !== 'POST' || req.url.split('?')[0] !== '/introspect') return json(404, { error: 'not_found' });
    if (id !== clientId || secret !== clientSecret) return json(401, { error: 'invalid_client' });
    const known = sessions.get(form.token);
    rec.active = Boolean(known);
    if (!known) return json(200, { active: false });
    json(200, { active: true, ...known });
  });

  return {
    url: `${s.url}/introspect`,
    calls,
    sessions,
    get count() {
      return calls.length;
    },
    callsFor(token) {
      return calls.filter((c) => c.token === token).length;
    },
    /**
     * A new session for `sub` (answer members `extra` merged over iss, sub, exp = now + 1 h,
     * client_id, token_type); returns its random identifier.
     */
    login(sub, extra = {}) {
      const sid = `sess-${randomBytes(16).toString('hex')}`;
      const now = Math.floor(Date.now() / 1000);
      sessions.set(sid, { iss: issuer, sub, exp: now + 3600, iat: now, client_id: 'web-app', token_type: 'session', ...extra });
      return sid;
    },
    setMode(next, extra = {}) {
      Object.assign(opts, { mode: next }, extra);
    },
    close: s.close,
  };
}
