// The graph view of a range query's result, drawn with uPlot (embedded in the binary when the
// build found it installed by npm; `window.uPlot` is missing otherwise). Series are aligned on the
// query's step grid (a missing sample is a gap), optionally stacked; the legend under the chart
// names every series by its labels and shows the values under the cursor (the series' own values,
// also when stacked). Times are shown in UTC, like the time inputs.

import { formatLabels } from './format.js';

// Series drawn at most; more make the chart unreadable and slow.
export const MAX_SERIES = 500;

const PALETTE = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
  '#bcbd22', '#17becf', '#393b79', '#637939', '#8c6d31', '#843c39', '#7b4173', '#3182bd',
];

export function chartAvailable() {
  return typeof window.uPlot === 'function';
}

function color(i) {
  return PALETTE[i % PALETTE.length];
}

function withAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function formatValue(v) {
  if (v === null || v === undefined) return '—';
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-3)) return v.toExponential(3);
  return String(Math.round(v * 1e6) / 1e6);
}

// The step grid's timestamps and, per series, its values on that grid (null where it has none).
export function align(result, start, end, step) {
  const n = Math.floor((end - start) / step + 1e-9) + 1;
  const xs = Array.from({ length: n }, (_, i) => start + i * step);
  const ys = result.map((s) => {
    const col = new Array(n).fill(null);
    for (const [t, v] of s.values || []) {
      const i = Math.round((t - start) / step);
      if (i >= 0 && i < n) col[i] = Number(v);
    }
    return col;
  });
  return { xs, ys };
}

// Running sums over the series at each step (a gap stays a gap and adds nothing).
export function stack(ys) {
  const acc = new Array(ys.length ? ys[0].length : 0).fill(0);
  return ys.map((col) =>
    col.map((v, i) => {
      if (v === null || !Number.isFinite(v)) return null;
      acc[i] += v;
      return acc[i];
    }),
  );
}

// Draws the chart into `container` (replacing what was there); returns an object with destroy().
// Selecting a time span with the mouse calls `onZoom(from, to)` (Unix seconds) instead of
// stretching the drawn points, so that the caller can query the span at a finer resolution.
export function renderChart(container, result, { start, end, step, stacked, onZoom }) {
  const shown = result.slice(0, MAX_SERIES);
  const { xs, ys } = align(shown, start, end, step);
  const drawn = stacked ? stack(ys) : ys;
  const series = [
    { label: 'Time', value: (u, t) => (t === null ? '—' : new Date(t * 1000).toISOString().replace('T', ' ').slice(0, 19)) },
    ...shown.map((s, i) => ({
      label: formatLabels(s.metric),
      stroke: color(i),
      width: 1.5,
      fill: stacked ? withAlpha(color(i), 0.35) : undefined,
      spanGaps: false,
      points: { show: false },
      value: (u, v, si, di) => formatValue(di === null || di === undefined ? v : ys[si - 1][di]),
    })),
  ];
  const bands = stacked ? shown.slice(1).map((_, i) => ({ series: [i + 2, i + 1] })) : [];
  const opts = {
    width: Math.max(container.clientWidth, 300),
    height: 400,
    tzDate: (t) => window.uPlot.tzDate(new Date(t * 1000), 'Etc/UTC'),
    scales: { x: { time: true, range: [start, end] } },
    axes: [{}, { size: 70, values: (u, vals) => vals.map(formatValue) }],
    series,
    bands,
    legend: { live: true },
    cursor: { focus: { prox: 16 }, drag: { x: true, y: false, setScale: false } },
    focus: { alpha: 0.3 },
    hooks: {
      setSelect: [
        (u) => {
          if (u.select.width < 2 || !onZoom) return;
          const from = u.posToVal(u.select.left, 'x');
          const to = u.posToVal(u.select.left + u.select.width, 'x');
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          onZoom(from, to);
        },
      ],
    },
  };
  container.replaceChildren();
  const plot = new window.uPlot(opts, [xs, ...drawn], container);
  const onResize = () => plot.setSize({ width: Math.max(container.clientWidth, 300), height: 400 });
  window.addEventListener('resize', onResize);
  return {
    destroy() {
      window.removeEventListener('resize', onResize);
      plot.destroy();
    },
    series: shown.length,
  };
}
