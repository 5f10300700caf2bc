// The expression browser (/graph): one expression, shown as a table (instant query at the
// evaluation time) or a graph (range query over range/end/resolution). The state lives in the URL
// in Prometheus's parameters, so a link reproduces a view and opening one runs its query:
//   g0.expr, g0.tab (0 graph, 1 table), g0.range_input (e.g. 1h), g0.end_input and
//   g0.moment_input ("YYYY-MM-DD HH:MM:SS" UTC, empty for now), g0.step_input (seconds or a
//   duration, empty for auto), g0.stacked (0/1).

import { apiPost } from './api.js';
import { Autocomplete } from './autocomplete.js';
import { chartAvailable, MAX_SERIES, renderChart } from './chart.js';
import { el, formatDuration, formatTime, parseDuration, parseTime, showAlert } from './format.js';
import { renderTable } from './table.js';

const $ = (id) => document.getElementById(id);
const expr = $('expr');
const errorBox = $('error');
const warningsBox = $('warnings');

let tab = 1;
let chart = null;
let running = 0;

function readUrl() {
  const p = new URLSearchParams(location.search);
  expr.value = p.get('g0.expr') || '';
  tab = p.get('g0.tab') === '0' ? 0 : 1;
  $('range').value = p.get('g0.range_input') || '1h';
  $('end').value = p.get('g0.end_input') || '';
  $('moment').value = p.get('g0.moment_input') || '';
  $('step').value = p.get('g0.step_input') || '';
  $('stacked').checked = p.get('g0.stacked') === '1';
}

// The view's state as URL parameters.
function stateParams() {
  const p = new URLSearchParams();
  p.set('g0.expr', expr.value);
  p.set('g0.tab', String(tab));
  if (tab === 0) {
    p.set('g0.range_input', $('range').value);
    if ($('end').value) p.set('g0.end_input', $('end').value);
    if ($('step').value) p.set('g0.step_input', $('step').value);
    p.set('g0.stacked', $('stacked').checked ? '1' : '0');
  } else if ($('moment').value) {
    p.set('g0.moment_input', $('moment').value);
  }
  return p.toString();
}

// The state last executed (an input's `change` after Enter runs nothing new).
let lastRun = null;

function writeUrl() {
  lastRun = stateParams();
  history.replaceState(null, '', `?${lastRun}`);
}

function showTab(t) {
  tab = t;
  $('table-panel').hidden = t !== 1;
  $('graph-panel').hidden = t !== 0;
  $('tab-table').setAttribute('aria-selected', String(t === 1));
  $('tab-graph').setAttribute('aria-selected', String(t === 0));
  $('uplot-missing').hidden = !(t === 0 && !chartAvailable());
}

function fitRows() {
  expr.rows = Math.min(Math.max(expr.value.split('\n').length, 1), 10);
}

// Reads a time input: Unix seconds, `now` for empty; throws with the input's name when unreadable.
function timeInput(id, name) {
  const t = parseTime($(id).value);
  if (t === null) return Date.now() / 1000;
  if (Number.isNaN(t)) throw new Error(`${name}: cannot read ${JSON.stringify($(id).value)} (use YYYY-MM-DD HH:MM:SS, UTC)`);
  return t;
}

async function runTable(query, seq) {
  const time = timeInput('moment', 'evaluation time');
  const started = performance.now();
  const { data, warnings } = await apiPost('api/v1/query', { query, time });
  if (seq !== running) return;
  const n = renderTable($('table-result'), data);
  $('table-stats').textContent = `${n} result${n === 1 ? '' : 's'} · ${Math.round(performance.now() - started)} ms`;
  showAlert(warningsBox, warnings.join('\n'));
}

async function runGraph(query, seq) {
  const range = parseDuration($('range').value);
  if (!range || range <= 0) throw new Error(`range: cannot read ${JSON.stringify($('range').value)} (e.g. 30m, 1h, 2d)`);
  const end = timeInput('end', 'end');
  const start = end - range;
  let step = Math.max(Math.floor(range / 250), 1);
  if ($('step').value.trim() !== '') {
    step = parseDuration($('step').value);
    if (!step || step <= 0) throw new Error(`resolution: cannot read ${JSON.stringify($('step').value)} (seconds or e.g. 15s)`);
  }
  const started = performance.now();
  const { data, warnings } = await apiPost('api/v1/query_range', { query, start, end, step });
  if (seq !== running) return;
  const notes = [...warnings];
  if (data.resultType !== 'matrix') throw new Error(`the graph needs a range result, got ${data.resultType}`);
  $('graph-stats').textContent = `${data.result.length} series · resolution ${formatDuration(step)} · ${Math.round(performance.now() - started)} ms`;
  chart?.destroy();
  chart = null;
  if (!chartAvailable()) {
    $('graph-result').replaceChildren(el('p', { class: 'muted' }, 'Graph unavailable (uPlot not embedded); use the Table tab.'));
  } else if (data.result.length === 0) {
    $('graph-result').replaceChildren(el('p', { class: 'empty-result' }, 'Empty query result'));
  } else {
    if (data.result.length > MAX_SERIES) notes.push(`Showing ${MAX_SERIES} of ${data.result.length} series.`);
    chart = renderChart($('graph-result'), data.result, { start, end, step, stacked: $('stacked').checked, onZoom: zoom });
  }
  showAlert(warningsBox, notes.join('\n'));
}

async function execute() {
  const query = expr.value.trim();
  writeUrl();
  showAlert(errorBox, '');
  showAlert(warningsBox, '');
  if (query === '') return;
  const seq = ++running;
  $('execute').disabled = true;
  document.body.classList.add('busy');
  try {
    await (tab === 0 ? runGraph(query, seq) : runTable(query, seq));
  } catch (e) {
    if (seq === running) {
      showAlert(errorBox, `Error executing query: ${e.message}`);
      (tab === 0 ? $('graph-result') : $('table-result')).replaceChildren();
    }
  } finally {
    if (seq === running) {
      $('execute').disabled = false;
      document.body.classList.remove('busy');
    }
  }
}

// The ranges the − and + buttons step through, in seconds.
const RANGE_STEPS = [60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400, 172800, 604800, 1209600, 2419200, 4838400, 31536000];

function stepRange(direction) {
  const current = parseDuration($('range').value) || 3600;
  const next = direction < 0
    ? [...RANGE_STEPS].reverse().find((r) => r < current) ?? RANGE_STEPS[0]
    : RANGE_STEPS.find((r) => r > current) ?? RANGE_STEPS[RANGE_STEPS.length - 1];
  $('range').value = formatDuration(next);
  execute();
}

function stepEnd(direction) {
  const range = parseDuration($('range').value) || 3600;
  const end = parseTime($('end').value) ?? Date.now() / 1000;
  if (Number.isNaN(end)) return;
  const moved = end + (direction * range) / 2;
  $('end').value = moved >= Date.now() / 1000 ? '' : formatTime(Math.round(moved));
  execute();
}

// Shows the span [from, to] (Unix seconds) selected on the graph, at the resolution it gets.
function zoom(from, to) {
  $('range').value = formatDuration(Math.max(Math.round(to - from), 1));
  $('end').value = formatTime(Math.round(to));
  execute();
}

function insertAtCursor(text) {
  const s = expr.selectionStart;
  expr.value = expr.value.slice(0, s) + text + expr.value.slice(expr.selectionEnd);
  expr.focus();
  expr.setSelectionRange(s + text.length, s + text.length);
  fitRows();
}

async function init() {
  readUrl();
  fitRows();
  showTab(tab);
  const complete = new Autocomplete(expr, $('suggestions'), $('autocomplete-status'));
  expr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.altKey && !e.isComposing) {
      e.preventDefault();
      complete.close();
      execute();
    }
  });
  expr.addEventListener('input', fitRows);
  $('query-form').addEventListener('submit', (e) => {
    e.preventDefault();
    execute();
  });
  for (const b of document.querySelectorAll('[role=tab]')) {
    b.addEventListener('click', () => {
      showTab(Number(b.dataset.tab));
      execute();
    });
  }
  // Enter runs the query; so does leaving an input after an edit (`change`), unless Enter did.
  for (const id of ['range', 'end', 'step', 'moment']) {
    $(id).addEventListener('keydown', (e) => {
      if (e.key === 'Enter') execute();
    });
    $(id).addEventListener('change', () => {
      if (stateParams() !== lastRun) execute();
    });
  }
  $('stacked').addEventListener('change', execute);
  $('range-less').addEventListener('click', () => stepRange(-1));
  $('range-more').addEventListener('click', () => stepRange(1));
  $('end-earlier').addEventListener('click', () => stepEnd(-1));
  $('end-later').addEventListener('click', () => stepEnd(1));
  $('metric-names').addEventListener('change', (e) => {
    if (e.target.value) insertAtCursor(e.target.value);
    e.target.value = '';
  });

  expr.focus();
  expr.setSelectionRange(expr.value.length, expr.value.length);
  const loading = complete.load().then((names) => {
    $('metric-names').append(...names.map((n) => el('option', { value: n }, n)));
    if (document.activeElement === expr) complete.update();
  });
  const first = expr.value.trim() ? execute() : Promise.resolve();
  await Promise.all([loading, first]);
  document.body.dataset.ready = 'true';
}

init();
