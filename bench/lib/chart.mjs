// The run's chart as a self-contained SVG (system fonts, no network): one column per
// concurrency; three rows: throughput as a multiple of the bare forwarder's (1.0 = as fast as a
// Worker that only forwards), the workerd process's CPU time per request, and latency (p99 bar,
// p50 tick). No label overlaps another: a value that is wider than its bar is written upwards,
// an axis word wider than its group is split at its hyphen, and each panel's scale leaves room
// above its tallest bar for that bar's label (textBoxes below is how that is measured, and how
// tests/e2e/bench-page.test.mjs checks it).

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

/** Width of a label in the chart's sans-serif, generously (digits and lower case ≈ 0.6 em). */
export const textWidth = (text, size) => String(text).length * size * 0.6;

const BAR_LABEL = 8;
const HALO = 'fill="#333" stroke="#ffffff" stroke-width="2.5" paint-order="stroke"';
const AXIS_LABEL = 11;

/** The runtime a results file was measured in, as the chart and the page name it. */
export const runtimeName = (results) => (results.settings.runtime === 'workerd' ? 'plain workerd' : 'through Miniflare');

export function renderChart(results) {
  const conns = results.settings.connections;
  const workloads = results.settings.workloads;
  const targets = Object.keys(results.targets).filter((t) => !results.targets[t].baseline && !results.targets[t].skipped);
  const rows = results.summary.rows;
  const get = (t, w, c) => rows.find((r) => r.target === t && r.workload === w && r.connections === c);
  const bareCell = (c) => results.cells.find((x) => x.target === 'bare' && x.workload === 'baseline' && x.connections === c);
  const baseline = (c) => results.summary.baselines.find((b) => b.connections === c);

  const panelW = Math.max(480, Math.floor(1200 / conns.length));
  const panelH = 210;
  const left = 60;
  const top = 96;
  const gapX = 44;
  const gapY = 110;
  const series = [
    {
      key: 'vsBare',
      title: 'throughput ÷ bare forwarder (higher is better)',
      ref: (c) => 1,
      note: (c) => (baseline(c)?.bareVsFloor ? ` · the origin alone would be ${(1 / baseline(c).bareVsFloor).toFixed(1)}` : ''),
      fmt: (v) => v.toFixed(2),
      tick: (v) => v.toFixed(2),
    },
    {
      key: 'cpuUs',
      title: 'workerd CPU µs per request (lower is better)',
      ref: (c) => baseline(c)?.bareCpuUs,
      note: () => '',
      fmt: (v) => String(Math.round(v)),
      tick: (v) => String(Math.round(v)),
    },
    {
      key: 'p99',
      title: 'latency ms: p99 bar, p50 tick (lower is better)',
      ref: (c) => bareCell(c)?.latencyMs.p99,
      note: () => '',
      fmt: (v) => (v >= 10 ? v.toFixed(0) : v.toFixed(1)),
      tick: (v) => String(Math.round(v * 10) / 10),
      tickOf: (t, w, c) => get(t, w, c)?.p50,
      // Latencies at 1 and at 64 connections differ tenfold: each panel its own scale.
      perPanel: true,
    },
  ];
  const width = left + conns.length * (panelW + gapX) + 10;
  const height = top + series.length * panelH + (series.length - 1) * gapY + 100;
  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="${AXIS_LABEL}">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  const m = results.machine;
  out.push(`<text x="${left}" y="24" font-size="16" font-weight="600">${esc(`edge-auth-proxy vs a jose Worker vs a bare forwarder, ${runtimeName(results)} (same workerd, same origin)`)}</text>`);
  out.push(`<text x="${left}" y="44" fill="#555">${esc(`${results.date.slice(0, 10)} · ${m.cpu} · ${m.nproc} CPUs · workerd ${results.versions.workerd} · ${results.settings.durationS}s per cell · ${results.command}`)}</text>`);

  const groupW = panelW / workloads.length;
  const barW = Math.min(26, (groupW - 12) / targets.length);
  // Values wider than their bar are written upwards: then a bar needs this much room above it.
  const labelRoom = (text) => 3 + (textWidth(text, BAR_LABEL) <= barW - 1 ? BAR_LABEL : textWidth(text, BAR_LABEL));

  series.forEach((s, si) => {
    const y0 = top + si * (panelH + gapY);
    // The smallest round scale over `cs` under which every bar's label stays inside the panel.
    const scaleFor = (cs) => {
      let maxV = 0;
      for (const c of cs) {
        for (const t of targets) for (const w of workloads) maxV = Math.max(maxV, get(t, w, c)?.[s.key] ?? 0);
        maxV = Math.max(maxV, s.ref(c) ?? 0);
      }
      let sc = niceScale(maxV * 1.05);
      const fits = (x) =>
        cs.every((c) => targets.every((t) => workloads.every((w) => {
          const v = get(t, w, c)?.[s.key];
          return v === null || v === undefined || panelH - (v / x.max) * panelH - labelRoom(s.fmt(v)) >= 2;
        })));
      for (let i = 0; i < 20 && !fits(sc); i++) sc = niceScale(sc.max * 1.05);
      return sc;
    };
    const shared = s.perPanel ? null : scaleFor(conns);
    out.push(`<text x="${left}" y="${y0 - 34}" font-size="13" font-weight="600">${esc(s.title)}</text>`);
    conns.forEach((c, ci) => {
      const x0 = left + ci * (panelW + gapX);
      const scale = shared ?? scaleFor([c]);
      const max = scale.max;
      const yOf = (v) => y0 + panelH - (v / max) * panelH;
      out.push(`<text x="${x0}" y="${y0 - 14}" fill="#333">${esc(`${c} connection${c === 1 ? '' : 's'}${s.note(c)}`)}</text>`);
      for (let k = 0; k * scale.step <= max + 1e-9; k++) {
        const v = k * scale.step;
        const y = yOf(v);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#e9ecef"/>`);
        if (ci === 0 || !shared) out.push(`<text x="${x0 - 6}" y="${y + 4}" text-anchor="end" fill="#666">${esc(s.tick(v))}</text>`);
      }
      // Value labels go last, over the reference line, with a white halo.
      const labels = [];
      workloads.forEach((w, wi) => {
        const gx = x0 + wi * groupW + (groupW - barW * targets.length) / 2;
        targets.forEach((t, ti) => {
          const v = get(t, w, c)?.[s.key];
          if (v === null || v === undefined) return;
          const y = yOf(v);
          const bx = gx + ti * barW;
          const cx = bx + (barW - 2) / 2;
          out.push(`<rect x="${bx}" y="${y}" width="${barW - 2}" height="${y0 + panelH - y}" fill="${COLORS[t] ?? '#868e96'}"><title>${esc(`${t} · ${w} · c=${c}: ${s.fmt(v)}`)}</title></rect>`);
          const tickV = s.tickOf?.(t, w, c);
          if (tickV !== null && tickV !== undefined) {
            const ty = yOf(tickV);
            out.push(`<line x1="${bx}" x2="${bx + barW - 2}" y1="${ty}" y2="${ty}" stroke="#212529" stroke-width="1.5"><title>${esc(`${t} · ${w} · c=${c}: p50 ${s.fmt(tickV)}`)}</title></line>`);
          }
          const label = s.fmt(v);
          if (textWidth(label, BAR_LABEL) <= barW - 1) {
            labels.push(`<text x="${cx}" y="${y - 3}" text-anchor="middle" font-size="${BAR_LABEL}" ${HALO}>${esc(label)}</text>`);
          } else {
            // Upwards from the bar's top, centred on the bar.
            labels.push(`<text x="${cx + BAR_LABEL / 3}" y="${y - 3}" transform="rotate(-90 ${cx + BAR_LABEL / 3} ${y - 3})" font-size="${BAR_LABEL}" ${HALO}>${esc(label)}</text>`);
          }
        });
        // A workload's name on one line if it fits its group, else split at its hyphen.
        const wx = x0 + wi * groupW + groupW / 2;
        const wy = y0 + panelH + 14;
        if (textWidth(w, AXIS_LABEL) <= groupW - 6 || !w.includes('-')) {
          out.push(`<text x="${wx}" y="${wy}" text-anchor="middle" fill="#333">${esc(w)}</text>`);
        } else {
          const [a, ...b] = w.split('-');
          out.push(`<text x="${wx}" y="${wy}" text-anchor="middle" fill="#333"><tspan x="${wx}">${esc(`${a}-`)}</tspan><tspan x="${wx}" dy="${AXIS_LABEL + 1}">${esc(b.join('-'))}</tspan></text>`);
        }
      });
      const ref = s.ref(c);
      if (ref) {
        const y = yOf(ref);
        out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#212529" stroke-dasharray="5 3"/>`);
      }
      out.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y0 + panelH}" y2="${y0 + panelH}" stroke="#495057"/>`);
      out.push(...labels);
    });
  });

  // Legend.
  const ly = height - 28;
  let lx = left;
  out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="#212529" stroke-dasharray="5 3"/>`);
  const refText = 'bare forwarder (its throughput, CPU and p99 per request)';
  out.push(`<text x="${lx + 28}" y="${ly}">${esc(refText)}</text>`);
  lx += 28 + textWidth(refText, AXIS_LABEL) + 16;
  for (const t of targets) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[t] ?? '#868e96'}"/>`);
    const label = results.targets[t].label;
    out.push(`<text x="${lx + 16}" y="${ly}">${esc(label)}</text>`);
    lx += 16 + textWidth(label, AXIS_LABEL) + 16;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * The box each `<text>` of a chart takes, as the chart estimates it (textWidth): `{ text, x0,
 * x1, y0, y1 }`. Rotated labels (`rotate(-90 …)`) stand upwards from their anchor; split
 * labels count one box per line.
 */
export function textBoxes(svg) {
  const boxes = [];
  const attr = (s, name) => {
    const m = new RegExp(`\\s${name}="([^"]*)"`).exec(s);
    return m ? m[1] : undefined;
  };
  for (const m of svg.matchAll(/<text([^>]*)>(.*?)<\/text>/g)) {
    const [, attrs, inner] = m;
    const size = Number(attr(attrs, 'font-size') ?? AXIS_LABEL);
    const anchor = attr(attrs, 'text-anchor') ?? 'start';
    const x = Number(attr(attrs, 'x'));
    const y = Number(attr(attrs, 'y'));
    const lines = inner.includes('<tspan') ? [...inner.matchAll(/<tspan[^>]*>(.*?)<\/tspan>/g)].map((t) => t[1]) : [inner];
    lines.forEach((raw, i) => {
      const text = raw.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
      const w = textWidth(text, size);
      const ly = y + i * (size + 1);
      if (/rotate\(-90/.test(attrs)) {
        boxes.push({ text, x0: x - size * 0.8, x1: x + size * 0.2, y0: ly - w, y1: ly });
      } else {
        const x0 = anchor === 'middle' ? x - w / 2 : anchor === 'end' ? x - w : x;
        boxes.push({ text, x0, x1: x0 + w, y0: ly - size * 0.8, y1: ly + size * 0.2 });
      }
    });
  }
  return boxes;
}
