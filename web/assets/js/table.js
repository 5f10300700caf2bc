// The table view of an instant query's result, as Prometheus's table shows it: one row per series
// (its labels, then its value, or for a range vector its samples `value @timestamp`), or the single
// row of a scalar or string.

import { el, formatLabels } from './format.js';

// Rows drawn at most; the rest are counted in a note.
export const MAX_ROWS = 10000;

function seriesCell(metric) {
  return el('td', { class: 'series' }, formatLabels(metric));
}

function sampleText([t, v]) {
  return `${v} @${t}`;
}

function histogramText(h) {
  return `count: ${h.count}, sum: ${h.sum}`;
}

// Renders `data` ({resultType, result}) into `container`; returns the number of rows in the result.
export function renderTable(container, data) {
  const rows = [];
  let total = 0;
  switch (data.resultType) {
    case 'vector':
      total = data.result.length;
      for (const s of data.result.slice(0, MAX_ROWS)) {
        const v = s.value ? s.value[1] : histogramText(s.histogram[1]);
        rows.push(el('tr', {}, seriesCell(s.metric), el('td', { class: 'value' }, v)));
      }
      break;
    case 'matrix':
      total = data.result.length;
      for (const s of data.result.slice(0, MAX_ROWS)) {
        const samples = (s.values || []).map(sampleText);
        const hs = (s.histograms || []).map(([t, h]) => `${histogramText(h)} @${t}`);
        const lines = samples.concat(hs).flatMap((line, i) => (i ? [el('br'), line] : [line]));
        rows.push(el('tr', {}, seriesCell(s.metric), el('td', { class: 'value' }, lines)));
      }
      break;
    case 'scalar':
    case 'string':
      total = 1;
      rows.push(el('tr', {}, el('td', { class: 'series' }, data.resultType), el('td', { class: 'value' }, data.result[1])));
      break;
    default:
      throw new Error(`unknown result type ${JSON.stringify(data.resultType)}`);
  }
  const parts = [];
  if (total === 0) {
    parts.push(el('p', { class: 'empty-result' }, 'Empty query result'));
  } else {
    parts.push(
      el(
        'table',
        { class: 'data result-table' },
        el('thead', {}, el('tr', {}, el('th', {}, 'Series'), el('th', {}, 'Value'))),
        el('tbody', {}, rows),
      ),
    );
  }
  if (total > MAX_ROWS) {
    parts.push(el('p', { class: 'alert warning' }, `Showing ${MAX_ROWS} of ${total} series.`));
  }
  container.replaceChildren(...parts);
  return total;
}
