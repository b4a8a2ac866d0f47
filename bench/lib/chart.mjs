// The run's chart as a self-contained SVG (system fonts, no network): one column per
// concurrency; top row, throughput as a multiple of the bare forwarder's (1.0 = as fast as a
// Worker that only forwards); bottom row, the workerd process's CPU time per request.

const COLORS = { 'edge-auth-proxy': '#e8590c', jose: '#1971c2', 'jose-cache': '#74c0fc', 'edge-auth-proxy-jwks-url': '#f59f00', 'jose-jwks-url': '#5f3dc4' };
export const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** An axis from 0 to at least `x` in 3 to 5 round steps. */
export function niceScale(x) {
  if (!(x > 0)) return { max: 1, step: 0.25 };
  const raw = x / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((st) => st >= raw);
  return { max: step * Math.ceil(x / step), step };
}

export function renderChart(results) {
  const conns = results.settings.connections;
  const workloads = results.settings.workloads;
  const targets = Object.keys(results.targets).filter((t) => !results.targets[t].baseline && !results.targets[t].skipped);
  const rows = results.summary.rows;
  const get = (t, w, c) => rows.find((r) => r.target === t && r.workload === w && r.connections === c);

  const panelW = Math.max(400, Math.floor(1000 / conns.length));
  const panelH = 230;
  const left = 60;
  const top = 96;
  const gapX = 30;
  const gapY = 96;
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
    }
    const scale = niceScale(maxV * 1.08);
    maxV = scale.max;
    out.push(`<text x="${left}" y="${y0 - 30}" font-size="13" font-weight="600">${esc(s.title)}</text>`);
    conns.forEach((c, ci) => {
      const x0 = left + ci * (panelW + gapX);
      const yOf = (v) => y0 + panelH - (v / maxV) * panelH;
      const floor = s.floor?.(c);
      const note = floor?.bareVsFloor ? ` · the origin alone would be ${(1 / floor.bareVsFloor).toFixed(1)}` : '';
      out.push(`<text x="${x0}" y="${y0 - 10}" fill="#333">${esc(`${c} connection${c === 1 ? '' : 's'}${note}`)}</text>`);
      for (let k = 0; k * scale.step <= maxV + 1e-9; k++) {
        const v = k * scale.step;
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
          out.push(`<text x="${gx + ti * barW + (barW - 2) / 2}" y="${y - 3}" text-anchor="middle" font-size="8" fill="#333">${esc(s.fmt(v))}</text>`);
        });
        out.push(`<text x="${x0 + wi * groupW + groupW / 2}" y="${y0 + panelH + 14}" text-anchor="middle" fill="#333">${esc(w)}</text>`);
      });
      const ref = s.ref(c);
      if (ref.v) {
        const y = yOf(ref.v);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#212529" stroke-dasharray="5 3"/>`);
      }
      out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#495057"/>`);
    });
  });

  // Legend.
  const ly = height - 28;
  let lx = left;
  out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="#212529" stroke-dasharray="5 3"/>`);
  out.push(`<text x="${lx + 28}" y="${ly}">bare forwarder (1.0 above; its CPU per request below)</text>`);
  lx += 330;
  for (const t of targets) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[t] ?? '#868e96'}"/>`);
    const label = results.targets[t].label;
    out.push(`<text x="${lx + 16}" y="${ly}">${esc(label)}</text>`);
    lx += 26 + label.length * 6.2;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
