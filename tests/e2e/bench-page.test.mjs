// bench/README.md's first screen and the committed charts, as a reader meets them: the table
// is the renderer's output for the committed results (never typed by hand, never stale), the
// charts are the committed JSON drawn by the current renderer, with a latency row, and no label
// in them runs into another ("0.680.68"). No benchmark runs here: only rendering.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';

import { renderChart, textBoxes } from '../../bench/lib/chart.mjs';
import { BEFORE, BEGIN, END, renderPage } from '../../bench/lib/page.mjs';
import { summarize } from '../../bench/lib/report.mjs';
import { ROOT } from './harness.mjs';

const BENCH = path.join(ROOT, 'bench');
const results = (stem) => {
  const r = JSON.parse(readFileSync(path.join(BENCH, 'results', `${stem}.json`), 'utf8'));
  r.summary = summarize(r);
  return r;
};
const RUNS = ['workerd-latest', 'latest'];

function overlaps(svg) {
  const boxes = textBoxes(svg);
  const found = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [a, b] = [boxes[i], boxes[j]];
      if (a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1) found.push(`${JSON.stringify(a.text)} × ${JSON.stringify(b.text)}`);
    }
  }
  return found;
}

describe('bench page', () => {
  test('the first screen of bench/README.md is what node bench/run.mjs --page renders from the committed results', () => {
    const readme = readFileSync(path.join(BENCH, 'README.md'), 'utf8');
    const from = readme.indexOf(BEGIN);
    const to = readme.indexOf(END);
    assert.ok(from > 0 && to > from, 'bench/README.md has the generated block');
    const block = readme.slice(from, to + END.length);
    const before = { workerd: results(BEFORE.workerd), miniflare: results(BEFORE.miniflare) };
    assert.equal(`${block}\n`, renderPage({ workerd: results('workerd-latest'), miniflare: results('latest'), before }), 'run node bench/run.mjs --page');
    // One screen: a title line before it, and in it the targets first (each with the runs
    // before and now, in both runtimes), then the workloads' table, the plain-workerd run first,
    // its chart, one sentence of conclusion.
    assert.ok(readme.slice(0, from).split('\n').length < 10);
    const tables = block.split('\n').filter((l) => /^\|---/.test(l));
    assert.equal(tables.length, 2);
    const lines = block.split('\n');
    const targets = lines.filter((l) => l.startsWith('| ') && lines.indexOf(l) < lines.findIndex((x) => x.startsWith('| 8 connections')));
    assert.match(targets[0], /^\| target \(issue 23\) \| most \| before: plain workerd \| before: through Miniflare \| now: plain workerd \| now: through Miniflare \| met \|$/);
    assert.deepEqual(
      targets.slice(1).map((l) => l.split(' | ')[0]),
      ['| CPU over bare, hot path', '| CPU over bare, first-seen RS256', '| CPU over bare, first-seen ES256', '| CPU over bare, invalid tokens', '| spawn to first 200', '| bundle (gzip)'],
    );
    // Each target row: a value in every column (a ratio, a size or "below bare"), and a verdict.
    for (const row of targets.slice(1)) {
      const cols = row.split(' | ');
      assert.equal(cols.length, 7, row);
      for (const v of cols.slice(2, 6)) assert.match(v, /^(\d+\.\d\d×|below bare|[\d,.]+ KiB)/, row);
      assert.match(cols[6], /^(yes|no|.* only) \|$/, row);
    }
    const rows = lines.filter((l) => l.startsWith('| ') && !targets.includes(l) && !l.startsWith('| 8 connections'));
    assert.deepEqual(
      rows.map((l) => l.split(' | ')[0]),
      ['| **plain workerd**: gateway', '| plain workerd: jose Worker', '| **through Miniflare**: gateway', '| through Miniflare: jose Worker'],
    );
    assert.match(block, /!\[[^\]]*\]\(results\/workerd-latest\.svg\)/);
    assert.equal(block.match(/\*\*In one sentence\*\*: [^\n]*\n/g)?.length, 1);
    // Numbers only the JSON could give (nothing typed): the bare forwarder's CPU in each run.
    for (const stem of RUNS) {
      const bare = results(stem).summary.baselines.find((b) => b.connections === 8).bareCpuUs;
      assert.ok(block.includes(`${Math.round(bare)} µs`), `${stem}: bare ${bare}`);
    }
  });

  for (const stem of RUNS) {
    test(`results/${stem}.svg is the committed JSON drawn by bench/lib/chart.mjs: a latency row, no label over another`, () => {
      const committed = readFileSync(path.join(BENCH, 'results', `${stem}.svg`), 'utf8');
      assert.equal(committed, renderChart(results(stem)), `run node bench/run.mjs --page (or --render bench/results/${stem}.json)`);
      assert.match(committed, /latency ms: p99 bar, p50 tick/);
      assert.deepEqual(overlaps(committed), []);
    });
  }

  test('labels stay apart however narrow the bars: five Workers, six workloads, values of every width', () => {
    const r = results('latest');
    // Two more Workers per group (the JWKS_URL variants) with the widest values there are.
    for (const id of ['edge-auth-proxy-jwks-url', 'jose-jwks-url']) {
      r.targets[id] = { label: id, baseline: false };
      for (const c of r.cells.filter((x) => x.target === 'edge-auth-proxy')) {
        r.cells.push({ ...c, target: id, rps: c.rps * 1.7, workerCpuUsPerRequest: c.workerCpuUsPerRequest * 3.3, latencyMs: { ...c.latencyMs, p99: c.latencyMs.p99 * 13.7 } });
      }
    }
    r.summary = summarize(r);
    assert.deepEqual(overlaps(renderChart(r)), []);
  });
});
