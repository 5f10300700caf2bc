// The TSDB status page (/tsdb-status): the head's figures and cardinality lists from
// `api/v1/status/tsdb`, and the out-of-order ingestion figures Strata reports on `metrics`
// (Prometheus's status answer has none): the window in effect, samples stored in order and out
// of order, late samples deduplicated, not stored (conflicting) or dropped at compaction
// (shadowed), and rejections by reason.

import { apiGet, fetchText } from './api.js';
import { el, formatDuration, formatTime, showAlert, table } from './format.js';

const $ = (id) => document.getElementById(id);

function timeCell(ms) {
  // An empty head reports the extreme int64 values.
  if (!Number.isFinite(ms) || Math.abs(ms) > 1e15) return '—';
  return `${formatTime(ms / 1000)} UTC (${ms})`;
}

function renderHead(h) {
  $('head-stats').className = '';
  $('head-stats').replaceChildren(
    table(
      ['Number of series', 'Number of chunks', 'Number of label pairs', 'Current min time', 'Current max time'],
      [[String(h.numSeries), String(h.chunkCount), String(h.numLabelPairs), timeCell(h.minTime), timeCell(h.maxTime)]],
      { class: 'data', id: 'head-table' },
    ),
  );
}

function renderList(id, header, list) {
  const body = list.length
    ? table(['Name', header], list.map((e) => [e.name, String(e.value)]), { class: 'data', id: `${id}-table` })
    : el('p', { class: 'muted' }, 'None');
  $(id).replaceChildren(body);
}

// Samples of the text exposition format: [{name, labels: {k: v}, value}].
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] || '')) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

function renderOutOfOrder(samples) {
  const get = (name, label, value) =>
    samples.find((s) => s.name === name && (!label || s.labels[label] === value));
  const rows = [];
  const window = get('strata_head_out_of_order_time_window_seconds');
  if (window) rows.push(['Out-of-order time window', formatDuration(window.value)]);
  const add = (title, s) => {
    if (s) rows.push([title, String(s.value)]);
  };
  add('Samples stored in order', get('strata_head_samples_appended_total', 'placement', 'in_order'));
  add('Samples stored out of order', get('strata_head_samples_appended_total', 'placement', 'out_of_order'));
  add('Samples deduplicated (identical, stored once)', get('strata_head_samples_deduplicated_total'));
  add('Late samples not stored (conflicting value)', get('strata_head_samples_conflicting_total'));
  add('Late samples shadowed at compaction', get('strata_head_samples_shadowed_total'));
  for (const s of samples.filter((x) => x.name === 'strata_head_samples_rejected_total')) {
    rows.push([`Samples rejected: ${s.labels.reason}`, String(s.value)]);
  }
  $('ooo-stats').className = '';
  $('ooo-stats').replaceChildren(
    rows.length
      ? table(['Figure', 'Value'], rows, { class: 'data', id: 'ooo-table' })
      : el('p', { class: 'muted' }, 'No out-of-order figures on /metrics.'),
  );
}

async function init() {
  const errors = [];
  const status = apiGet('api/v1/status/tsdb', { limit: 10 }).then(({ data }) => {
    renderHead(data.headStats);
    renderList('series-by-metric', 'Count', data.seriesCountByMetricName);
    renderList('values-by-label', 'Count', data.labelValueCountByLabelName);
    renderList('memory-by-label', 'Bytes', data.memoryInBytesByLabelName);
    renderList('series-by-pair', 'Count', data.seriesCountByLabelValuePair);
  });
  const metrics = fetchText('metrics').then((text) => renderOutOfOrder(parseMetrics(text)));
  for (const r of await Promise.allSettled([status, metrics])) {
    if (r.status === 'rejected') errors.push(r.reason.message);
  }
  showAlert($('error'), errors.length ? `Error loading the status: ${errors.join('; ')}` : '');
  document.body.dataset.ready = 'true';
}

init();
