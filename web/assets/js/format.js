// Formatting and parsing shared by the pages: series labels as PromQL writes them, durations,
// times (UTC), and a small helper to build DOM nodes from text (never from HTML strings).

// Builds an element: el('td', {class: 'x'}, 'text', childNode, ...). Text is set as text.
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// A label value quoted as PromQL writes it.
export function quote(v) {
  return JSON.stringify(v);
}

// `name{a="1", b="2"}` for a series' label set; `{}` for none.
export function formatLabels(metric) {
  const name = metric.__name__ || '';
  const pairs = Object.keys(metric)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${quote(metric[k])}`);
  if (pairs.length === 0) return name || '{}';
  return `${name}{${pairs.join(', ')}}`;
}

const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

// Parses a Prometheus duration ("1h", "1h30m", "90s", "500ms") or a number of seconds; null if
// neither.
export function parseDuration(text) {
  const t = String(text).trim();
  if (t === '') return null;
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+)(ms|s|m|h|d|w|y)/gy;
  let total = 0;
  let pos = 0;
  let m;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * UNIT_SECONDS[m[2]];
    pos = re.lastIndex;
  }
  return pos === t.length && pos > 0 ? total : null;
}

// Seconds as the shortest Prometheus duration ("1h30m", "15s", "250ms").
export function formatDuration(seconds) {
  let ms = Math.round(seconds * 1000);
  if (ms === 0) return '0s';
  let out = '';
  for (const [u, s] of [['y', 31536000], ['w', 604800], ['d', 86400], ['h', 3600], ['m', 60], ['s', 1], ['ms', 0.001]]) {
    const n = Math.floor(ms / (s * 1000));
    if (n > 0) {
      out += `${n}${u}`;
      ms -= n * s * 1000;
    }
  }
  return out;
}

// Parses "YYYY-MM-DD HH:MM[:SS]" (UTC), an RFC 3339 time or Unix seconds; null for an empty text,
// NaN for one that is none of these.
export function parseTime(text) {
  const t = String(text).trim();
  if (t === '') return null;
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const m = /^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?$/.exec(t);
  if (m) return Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +(m[6] || 0)) / 1000;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? NaN : ms / 1000;
}

// Unix seconds as "YYYY-MM-DD HH:MM:SS" (UTC).
export function formatTime(seconds) {
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

// A table with a header row and one row per entry of `rows` (arrays of cells: text or nodes).
export function table(headers, rows, attrs) {
  return el(
    'table',
    attrs || { class: 'data' },
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows.map((r) => el('tr', {}, r.map((c) => el('td', {}, c))))),
  );
}

// Shows `message` in the element (an .alert), or hides it for an empty message.
export function showAlert(elem, message) {
  elem.textContent = message || '';
  elem.hidden = !message;
}
