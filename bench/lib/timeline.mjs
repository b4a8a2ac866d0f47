// The fault soak's timeline as a self-contained SVG (system fonts, no network): one panel per
// run (without and with the token coordinator), answers per second stacked by status, lost
// answers per second as a red line over them, each fault window shaded and named above the plot.
// No two texts overlap: window names go to the first lane where they fit, the time axis takes a
// step its labels fit in, and the legend wraps.

import { esc, niceScale } from './chart.mjs';

/** Width of `text` at `size` px in a sans-serif system font, slightly over-estimated. */
export const textWidth = (text, size = 11) => String(text).length * size * 0.6;

/**
 * Puts each label `{ x, width }` (left edge, px) in the first lane where it overlaps no label
 * already there (with `gap` px between them). Answers the lane of each, in input order.
 */
export function placeInLanes(labels, gap = 8) {
  const lanes = [];
  return labels.map(({ x, width }) => {
    let lane = lanes.findIndex((used) => used.every(([a, b]) => x + width + gap <= a || b + gap <= x));
    if (lane < 0) {
      lane = lanes.length;
      lanes.push([]);
    }
    lanes[lane].push([x, x + width]);
    return lane;
  });
}

/** The smallest of the usual steps (s) whose labels, `labelW` px wide, fit `pxPerS` apart. */
export function timeStep(pxPerS, labelW) {
  return [5, 10, 15, 20, 30, 60, 120, 300, 600].find((s) => s * pxPerS >= labelW + 12) ?? 600;
}

export const STATUS_COLORS = { 200: '#2f9e44', 401: '#adb5bd', 400: '#868e96', 502: '#ae3ec9', 503: '#f59f00', 504: '#1c7ed6' };
const OTHER = '#495057';
const LOST = '#e03131';
const STALL = '#212529';
export const WINDOW_COLORS = { token: '#ffe8cc', jwks: '#d0ebff', 'jwks-rotated': '#e7f5ff', introspection: '#e5dbff', 'origin-refusal': '#ffdeeb', 'origin-slow': '#fff3bf' };
const WINDOW_NAMES = { token: 'token endpoint down', jwks: 'JWKS down', 'jwks-rotated': 'JWKS rotated', introspection: 'introspection down', 'origin-refusal': 'origin refuses tokens', 'origin-slow': 'origin slow' };

/**
 * `run`: `{ title, subtitle, variants: [{ label, seconds: [{ t, statuses: { [status]: n }, lost }],
 * windows: [{ kind, label, from, to }], stalls: [{ from, to }] }] }` (times in s from the run's
 * start; `stalls`: when the soak's own process stood still, marked under the time axis).
 */
export function renderTimeline(run) {
  const width = 1100;
  const left = 52;
  const right = 16;
  const plotW = width - left - right;
  const plotH = 170;
  const out = [];
  const statuses = [...new Set(run.variants.flatMap((v) => v.seconds.flatMap((s) => Object.keys(s.statuses))))].sort((a, b) => Number(a) - Number(b));
  const color = (st) => STATUS_COLORS[st] ?? OTHER;
  const duration = Math.max(1, ...run.variants.flatMap((v) => v.seconds.map((s) => s.t + 1)));
  const pxPerS = plotW / duration;
  const r1 = (x) => Math.round(x * 10) / 10;
  const xOf = (t) => r1(left + t * pxPerS);
  const maxPerS = Math.max(1, ...run.variants.flatMap((v) => v.seconds.map((s) => Object.values(s.statuses).reduce((a, b) => a + b, 0))));
  const scale = niceScale(maxPerS * 1.05);
  const step = timeStep(pxPerS, textWidth(`${duration} s`));

  let y = 28;
  const body = [];
  body.push(`<text x="${left}" y="${y}" font-size="16" font-weight="600">${esc(run.title)}</text>`);
  y += 20;
  body.push(`<text x="${left}" y="${y}" fill="#555">${esc(run.subtitle)}</text>`);
  y += 14;

  for (const v of run.variants) {
    y += 26;
    body.push(`<text x="${left}" y="${y}" font-size="13" font-weight="600">${esc(v.label)}</text>`);
    // Window names in lanes above the plot, each at its window's left edge (kept inside the plot).
    const names = v.windows.map((w) => {
      const w_ = textWidth(w.label, 10);
      return { x: Math.min(xOf(w.from), left + plotW - w_), width: w_, w };
    });
    const lanes = placeInLanes(names);
    const laneCount = Math.max(0, ...lanes.map((l) => l + 1));
    const top = y + 10 + laneCount * 14;
    names.forEach((n, k) => {
      const ly = y + 20 + lanes[k] * 14;
      body.push(`<text x="${n.x}" y="${ly}" font-size="10" fill="#333">${esc(n.w.label)}</text>`);
    });
    // Shaded windows, then the grid, the bars and the lost line.
    for (const w of v.windows) {
      const x0 = xOf(w.from);
      const wpx = Math.max(2, (w.to - w.from) * pxPerS);
      body.push(`<rect x="${x0}" y="${top}" width="${wpx}" height="${plotH}" fill="${WINDOW_COLORS[w.kind] ?? '#f1f3f5'}"/>`);
      body.push(`<line x1="${x0}" x2="${x0}" y1="${top - 3}" y2="${top + plotH}" stroke="#868e96" stroke-width="0.5"/>`);
    }
    const yOf = (n) => r1(top + plotH - (n / scale.max) * plotH);
    for (let k = 0; k * scale.step <= scale.max + 1e-9; k++) {
      const n = k * scale.step;
      body.push(`<line x1="${left}" x2="${left + plotW}" y1="${yOf(n)}" y2="${yOf(n)}" stroke="#dee2e6" stroke-width="0.5"/>`);
      body.push(`<text x="${left - 6}" y="${yOf(n) + 4}" text-anchor="end" fill="#666">${n}</text>`);
    }
    const barW = r1(Math.max(0.5, pxPerS - 0.3));
    for (const s of v.seconds) {
      let acc = 0;
      for (const st of statuses) {
        const n = s.statuses[st] ?? 0;
        if (!n) continue;
        body.push(`<rect x="${xOf(s.t)}" y="${yOf(acc + n)}" width="${barW}" height="${r1(yOf(acc) - yOf(acc + n))}" fill="${color(st)}"><title>${s.t} s: ${n} × ${st}</title></rect>`);
        acc += n;
      }
    }
    const lostPts = v.seconds.map((s) => `${r1(xOf(s.t) + barW / 2)},${yOf(s.lost ?? 0)}`).join(' ');
    body.push(`<polyline points="${lostPts}" fill="none" stroke="${LOST}" stroke-width="1.5"/>`);
    body.push(`<line x1="${left}" x2="${left + plotW}" y1="${top + plotH}" y2="${top + plotH}" stroke="#495057"/>`);
    for (const st of v.stalls ?? []) {
      body.push(`<rect x="${xOf(st.from)}" y="${top + plotH + 1}" width="${Math.max(2, (st.to - st.from) * pxPerS)}" height="3" fill="${STALL}"/>`);
    }
    for (let t = 0; t <= duration; t += step) {
      body.push(`<line x1="${xOf(t)}" x2="${xOf(t)}" y1="${top + plotH}" y2="${top + plotH + 4}" stroke="#495057"/>`);
      body.push(`<text x="${xOf(t)}" y="${top + plotH + 16}" text-anchor="middle" fill="#666">${t} s</text>`);
    }
    body.push(`<text x="${left - 40}" y="${top + plotH / 2}" fill="#666" transform="rotate(-90 ${left - 40} ${top + plotH / 2})" text-anchor="middle">answers / s</text>`);
    y = top + plotH + 22;
  }

  // Legend: statuses, the lost line, then the window kinds present; wraps at the plot's width.
  const items = [
    ...statuses.map((st) => ({ swatch: color(st), text: st })),
    { line: LOST, text: 'lost answers / s' },
    ...(run.variants.some((v) => v.stalls?.length) ? [{ swatch: STALL, text: 'the soak itself stalled (under the axis)' }] : []),
    ...[...new Set(run.variants.flatMap((v) => v.windows.map((w) => w.kind)))].map((k) => ({ swatch: WINDOW_COLORS[k] ?? '#f1f3f5', text: WINDOW_NAMES[k] ?? k })),
  ];
  y += 22;
  let lx = left;
  for (const it of items) {
    const w = 18 + textWidth(it.text) + 16;
    if (lx + w > left + plotW) {
      lx = left;
      y += 18;
    }
    if (it.line) body.push(`<line x1="${lx}" x2="${lx + 12}" y1="${y - 4}" y2="${y - 4}" stroke="${it.line}" stroke-width="2"/>`);
    else body.push(`<rect x="${lx}" y="${y - 10}" width="12" height="12" fill="${it.swatch}" stroke="#adb5bd" stroke-width="0.5"/>`);
    body.push(`<text x="${lx + 18}" y="${y}">${esc(it.text)}</text>`);
    lx += w;
  }
  const height = y + 16;
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  out.push(...body);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
