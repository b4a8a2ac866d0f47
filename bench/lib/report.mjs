// Ratios and the Markdown report of a benchmark run (results JSON → summary, tables).

const r = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
const ratio = (a, b) => (a && b ? r(a / b) : null);

/** Cells of the Workers under test with their ratios against the floor, the bare forwarder and jose. */
export function summarize(results) {
  const cell = (target, workload, c) => results.cells.find((x) => x.target === target && x.connections === c && x.workload === workload);
  const rows = [];
  for (const c of results.settings.connections) {
    const floor = cell('floor', 'baseline', c);
    const bare = cell('bare', 'baseline', c);
    for (const x of results.cells.filter((y) => y.connections === c && !results.targets[y.target]?.baseline)) {
      const jose = cell('jose', x.workload, c);
      rows.push({
        connections: c,
        workload: x.workload,
        target: x.target,
        rps: x.rps,
        vsFloor: ratio(x.rps, floor?.rps),
        vsBare: ratio(x.rps, bare?.rps),
        vsJose: x.target === 'jose' ? null : ratio(x.rps, jose?.rps),
        cpuUs: x.workerCpuUsPerRequest,
        cpuVsBare: ratio(x.workerCpuUsPerRequest, bare?.workerCpuUsPerRequest),
        cpuAboveBareUs: bare && x.workerCpuUsPerRequest !== null ? r(x.workerCpuUsPerRequest - bare.workerCpuUsPerRequest, 1) : null,
        p50: x.latencyMs.p50,
        p99: x.latencyMs.p99,
        errors: x.errors,
      });
    }
  }
  const baselines = results.settings.connections.map((c) => {
    const floor = cell('floor', 'baseline', c);
    const bare = cell('bare', 'baseline', c);
    return { connections: c, floorRps: floor?.rps ?? null, bareRps: bare?.rps ?? null, bareVsFloor: ratio(bare?.rps, floor?.rps), bareCpuUs: bare?.workerCpuUsPerRequest ?? null };
  });
  return { baselines, rows };
}

const fmt = (x, d = 0) => (x === null || x === undefined ? '–' : Number(x).toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d }));
const times = (x) => (x === null || x === undefined ? '–' : `${fmt(x, 2)}×`);

export function renderMarkdown(results, stem = 'latest') {
  const { machine: m, versions: v, settings: s } = results;
  const out = [];
  // Results from before BENCH_RUNTIME existed were all Miniflare runs.
  const plain = s.runtime === 'workerd';
  out.push(`### Run of ${results.date.slice(0, 10)} (${s.mode} mode${plain ? ', plain workerd' : ''})`);
  out.push('');
  out.push(`- Machine: ${m.cpu}, ${m.nproc} CPUs, ${m.memoryGiB} GiB RAM, ${m.kernel}; load average at start ${m.loadAverageAtStart}.`);
  out.push(`- Command: \`${results.command}\`; ${s.durationS} s per cell (first-seen cells end earlier after ${fmt(s.perCellTokens)} requests), connections ${s.connections.join(', ')}; ${results.wallClockS ?? '?'} s in all.`);
  out.push(`- Versions: workerd ${v.workerd} (${plain ? 'plain `workerd serve`, generated config, no Miniflare' : `Miniflare ${v.miniflare}`}), wrangler ${v.wrangler}, autocannon ${v.autocannon}, jose ${v.jose}, Node ${v.node}.`);
  out.push(`- Raw numbers: [\`results/${stem}.json\`](results/${stem}.json); chart: [\`results/${stem}.svg\`](results/${stem}.svg).`);
  out.push('');

  out.push('**Bundle** (`wrangler deploy --dry-run`, what would be uploaded) **and startup** (spawning workerd → first 200, median of ' + s.startups + '):');
  out.push('');
  out.push('| Worker | upload | gzip | workerd ready | first 200 |');
  out.push('|---|---:|---:|---:|---:|');
  const startupOf = (id) => results.targets[id]?.startup;
  const bundleRows = [
    ['bare forwarder', 'bare', 'bare'],
    ['edge-auth-proxy', 'edge-auth-proxy', 'edge-auth-proxy'],
    ['jose Worker', 'jose-worker', 'jose'],
  ];
  for (const [label, b, t] of bundleRows) {
    const bu = results.bundles[b];
    const st = startupOf(t);
    out.push(`| ${label} | ${fmt(bu?.uploadKiB, 2)} KiB | ${fmt(bu?.gzipKiB, 2)} KiB | ${st ? `${fmt(st.readyMs)} ms` : '–'} | ${st ? `${fmt(st.first200Ms)} ms` : '–'} |`);
  }
  out.push('');

  out.push('**Baselines** (the same request, no checks):');
  out.push('');
  out.push('| connections | origin alone | bare Worker | bare ÷ origin | bare Worker CPU/request |');
  out.push('|---:|---:|---:|---:|---:|');
  for (const b of results.summary.baselines) out.push(`| ${b.connections} | ${fmt(b.floorRps)} rps | ${fmt(b.bareRps)} rps | ${times(b.bareVsFloor)} | ${fmt(b.bareCpuUs)} µs |`);
  out.push('');

  out.push('**Headline**: edge-auth-proxy against the jose Worker and the bare forwarder (throughput ratios; CPU is workerd user+system time per request).');
  out.push('');
  out.push('| workload | c | edge-auth-proxy rps | jose rps | gateway ÷ jose | gateway ÷ bare | jose ÷ bare | gateway CPU µs/req | jose CPU µs/req | jose+cache ÷ jose |');
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  const row = (t, w, c) => results.summary.rows.find((x) => x.target === t && x.workload === w && x.connections === c);
  for (const w of s.workloads) {
    for (const c of s.connections) {
      const g = row('edge-auth-proxy', w, c);
      const j = row('jose', w, c);
      const jc = row('jose-cache', w, c);
      if (!g && !j) continue;
      out.push(`| ${w} | ${c} | ${fmt(g?.rps)} | ${fmt(j?.rps)} | ${times(g?.vsJose)} | ${times(g?.vsBare)} | ${times(j?.vsBare)} | ${fmt(g?.cpuUs)} | ${fmt(j?.cpuUs)} | ${times(jc?.vsJose)} |`);
    }
  }
  out.push('');
  out.push(`**Workers under test.** rps ratios are against the origin alone (floor), the bare forwarder and the jose Worker at the same concurrency; CPU is the workerd process\'s user+system time per request (${plain ? 'plain workerd, no entry Worker in front' : 'it includes Miniflare\'s entry Worker'}, so the bare forwarder\'s figure is the floor of it).`);
  out.push('');
  out.push('| c | workload | Worker | rps | × floor | × bare | × jose | p50 ms | p99 ms | max ms | CPU µs/req | CPU × bare | errors | origin calls | token calls | JWKS calls |');
  out.push('|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of results.summary.rows) {
    const c = results.cells.find((x) => x.target === row.target && x.workload === row.workload && x.connections === row.connections);
    out.push(
      `| ${row.connections} | ${row.workload} | ${row.target} | ${fmt(row.rps)} | ${times(row.vsFloor)} | ${times(row.vsBare)} | ${times(row.vsJose)} | ${fmt(c.latencyMs.p50, 2)} | ${fmt(c.latencyMs.p99, 2)} | ${fmt(c.latencyMs.max, 1)} | ${fmt(row.cpuUs)} | ${times(row.cpuVsBare)} | ${c.errors} | ${fmt(c.originCalls)} | ${c.tokenEndpointCalls} | ${c.jwksCalls} |`,
    );
  }
  out.push('');
  out.push('Workloads: ' + Object.entries(results.workloads).map(([k, label]) => `\`${k}\`: ${label.replace(/^[^:]+: /, '')}`).join('; ') + '.');
  out.push('');
  return `${out.join('\n')}\n`;
}
