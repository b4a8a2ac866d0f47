// The run's chart as a self-contained SVG (system fonts, no network): one column per
// concurrency; top row, throughput as a multiple of the bare forwarder's (1.0 = as fast as a
// Worker that only forwards); bottom row, the workerd process's CPU time per request.

const COLORS = { 'edge-auth-proxy': '#e8590c', jose: '#1971c2', 'jose-cache': '#74c0fc', 'edge-auth-proxy-jwks-url': '#f59f00', 'jose-jwks-url': '#5f3dc4' };
const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceMax(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

export function renderChart(results) {
  const conns = results.settings.connections;
  const workloads = results.settings.workloads;
  const targets = Object.keys(results.targets).filter((t) => !results.targets[t].baseline && !results.targets[t].skipped);
  const rows = results.summary.rows;
  const get = (t, w, c) => rows.find((r) => r.target === t && r.workload === w && r.connections === c);

  const panelW = 400;
  const panelH = 230;
  const left = 60;
  const top = 70;
  const gapX = 30;
  const gapY = 80;
  const width = left + conns.length * (panelW + gapX) + 10;
  const height = top + 2 * panelH + gapY + 90;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  const m = results.machine;
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="600">edge-auth-proxy vs a jose Worker vs a bare forwarder (same workerd, same origin)</text>`);
  out.push(`<text x="${left}" y="44" fill="#555">${esc(`${results.date.slice(0, 10)} · ${m.cpu} · ${m.nproc} CPUs · workerd ${results.versions.workerd} · ${results.settings.durationS}s per cell · ${results.command}`)}</text>`);

  const series = [
    { key: 'vsBare', title: 'throughput ÷ bare forwarder (higher is better)', ref: (c) => ({ v: 1, label: 'bare forwarder' }), floor: (c) => results.summary.baselines.find((b) => b.connections === c), fmt: (v) => v.toFixed(2) },
    { key: 'cpuUs', title: 'workerd CPU µs per request (lower is better)', ref: (c) => ({ v: results.summary.baselines.find((b) => b.connections === c)?.bareCpuUs, label: 'bare forwarder' }), fmt: (v) => String(Math.round(v)) },
  ];

  series.forEach((s, si) => {
    const y0 = top + si * (panelH + gapY);
    let maxV = 0;
    for (const c of conns) {
      for (const t of targets) for (const w of workloads) maxV = Math.max(maxV, get(t, w, c)?.[s.key] ?? 0);
      const ref = s.ref(c).v;
      if (ref) maxV = Math.max(maxV, ref);
      if (s.floor) maxV = Math.max(maxV, 1 / (s.floor(c)?.bareVsFloor || 1));
    }
    maxV = niceMax(maxV * 1.08);
    conns.forEach((c, ci) => {
      const x0 = left + ci * (panelW + gapX);
      const yOf = (v) => y0 + panelH - (v / maxV) * panelH;
      out.push(`<text x="${x0}" y="${y0 - 10}" font-weight="600">${esc(s.title)} · ${c} connection${c === 1 ? '' : 's'}</text>`);
      for (let k = 0; k <= 4; k++) {
        const v = (maxV * k) / 4;
        const y = yOf(v);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#e9ecef"/>`);
        if (ci === 0) out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#666">${esc(s.key === 'vsBare' ? v.toFixed(2) : Math.round(v))}</text>`);
      }
      const groupW = panelW / workloads.length;
      const barW = Math.min(26, (groupW - 12) / targets.length);
      workloads.forEach((w, wi) => {
        const gx = x0 + wi * groupW + (groupW - barW * targets.length) / 2;
        targets.forEach((t, ti) => {
          const v = get(t, w, c)?.[s.key];
          if (v === null || v === undefined) return;
          const y = yOf(v);
          out.push(`<rect x="${gx + ti * barW}" y="${y}" width="${barW - 2}" height="${y0 + panelH - y}" fill="${COLORS[t] ?? '#868e96'}"><title>${esc(`${t} · ${w} · c=${c}: ${s.fmt(v)}`)}</title></rect>`);
          out.push(`<text x="${gx + ti * barW + (barW - 2) / 2}" y="${y - 3}" text-anchor="middle" font-size="9" fill="#333">${esc(s.fmt(v))}</text>`);
        });
        out.push(`<text x="${x0 + wi * groupW + groupW / 2}" y="${y0 + panelH + 14}" text-anchor="middle" fill="#333">${esc(w)}</text>`);
      });
      const ref = s.ref(c);
      if (ref.v) {
        const y = yOf(ref.v);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#212529" stroke-dasharray="5 3"/>`);
        out.push(`<text x="${x0 + panelW}" y="${y - 4}" text-anchor="end" fill="#212529" font-size="10">${esc(ref.label)}${s.key === 'cpuUs' ? ` ${Math.round(ref.v)} µs` : ''}</text>`);
      }
      if (s.floor) {
        const b = s.floor(c);
        if (b?.bareVsFloor) {
          const y = yOf(1 / b.bareVsFloor);
          out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#2f9e44" stroke-dasharray="2 3"/>`);
          out.push(`<text x="${x0 + panelW}" y="${y - 4}" text-anchor="end" fill="#2f9e44" font-size="10">origin alone ${(1 / b.bareVsFloor).toFixed(2)}</text>`);
        }
      }
      out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#495057"/>`);
    });
  });

  // Legend.
  const ly = height - 28;
  let lx = left;
  for (const t of targets) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[t] ?? '#868e96'}"/>`);
    const label = results.targets[t].label;
    out.push(`<text x="${lx + 16}" y="${ly}">${esc(label)}</text>`);
    lx += 26 + label.length * 6.2;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
