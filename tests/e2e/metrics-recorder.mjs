// A `METRICS` binding of our own for the built Worker in Miniflare: Miniflare's Analytics Engine
// binding drops every point, so this one records them. Given through `wrappedBindings`, it has
// `writeDataPoint` (which is also how the gateway tells an Analytics Engine dataset from other
// bindings) and prints each point as one console line, `{"metrics_point":{…},"at":…}`, which the
// harness captures with the log lines. `MODE: 'throw'` makes every write throw, as a failing
// dataset would, after printing `{"metrics_throw":<blobs[0]>}` (the write was attempted).

import path from 'node:path';

import { Miniflare } from 'miniflare';

import { SCRIPT, captureOutput, disposeOnce } from './harness.mjs';

const RECORDER = `
export default function (env) {
  return {
    writeDataPoint(point) {
      if (env.MODE === 'throw') {
        console.log(JSON.stringify({ metrics_throw: point.blobs[0] }));
        throw new Error('dataset unavailable');
      }
      console.log(JSON.stringify({ metrics_point: point, at: Date.now() }));
    },
  };
}
`;

/**
 * The built Worker with `METRICS` bound to the recorder (`mode`: 'record' or 'throw'). Returns
 * what `startGateway` does, plus `points()`: every point written so far, in order.
 */
export async function startMeteredGateway({ bindings, mode = 'record', verbose = process.env.E2E_VERBOSE === '1' }) {
  const out = captureOutput({ label: 'worker', verbose });
  const mf = new Miniflare({
    cf: false,
    host: '127.0.0.1',
    port: 0,
    handleRuntimeStdio: out.handleRuntimeStdio,
    workers: [
      {
        name: 'gateway',
        modules: true,
        scriptPath: SCRIPT,
        modulesRoot: path.dirname(SCRIPT),
        modulesRules: [
          { type: 'ESModule', include: ['**/*.js'] },
          { type: 'CompiledWasm', include: ['**/*.wasm'] },
        ],
        compatibilityDate: '2026-04-01',
        kvNamespaces: ['TOKEN_CACHE'],
        bindings,
        wrappedBindings: { METRICS: { scriptName: 'metrics-recorder', bindings: { MODE: mode } } },
      },
      { name: 'metrics-recorder', modules: [{ type: 'ESModule', path: 'recorder.mjs', contents: RECORDER }] },
    ],
  });
  await out.ready(mf);
  // Each point with `timestamp` (epoch ms, the Worker's clock when it was written), the column
  // Analytics Engine adds.
  const points = () => out.jsonLogs().flatMap((l) => (l.metrics_point ? [{ ...l.metrics_point, timestamp: l.at }] : []));
  return {
    mf,
    fetch(p, init = {}) {
      return mf.dispatchFetch(new URL(p, 'http://gateway.test').href, { redirect: 'manual', ...init });
    },
    async scheduled(cron = '*/5 * * * *') {
      const worker = await mf.getWorker();
      return worker.scheduled({ cron, scheduledTime: new Date() });
    },
    points,
    /** With `mode: 'throw'`: the first blob of every point whose write threw. */
    throws: () => out.jsonLogs().flatMap((l) => (l.metrics_throw ? [l.metrics_throw] : [])),
    /** Waits until at least `n` points have been captured (console output is asynchronous). */
    async waitForPoints(n, timeoutMs = 3000) {
      const until = Date.now() + timeoutMs;
      while (points().length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return points();
    },
    output: out.output,
    requestLogs: out.requestLogs,
    waitForRequestLogs: out.waitForRequestLogs,
    dispose: disposeOnce(mf),
  };
}
