// Completion for the expression box: metric names, functions and keywords where an expression
// starts; label names inside `{…}` and grouping clauses (`by (…)`); label values inside a quoted
// matcher value (`{job="…`). Metric names and label names are loaded once from
// `api/v1/label/__name__/values` and `api/v1/labels`; label values (and a metric's label names)
// are fetched when first needed, narrowed with `match[]` to the metric being written when there
// is one, and cached.

import { apiGet } from './api.js';
import { el } from './format.js';
import { AGGREGATIONS, FUNCTIONS, GROUPING, KEYWORDS } from './promql-words.js';

const MAX_SHOWN = 100;
const IDENT = /[a-zA-Z_:][a-zA-Z0-9_:]*$/;

// The metric name written just before the `{` at `bracePos`, or ''.
function metricBefore(text, bracePos) {
  const m = IDENT.exec(text.slice(0, bracePos).trimEnd());
  return m ? m[0] : '';
}

// What may be completed at `caret` in `text`: null, or {kind, prefix, from, ...} where `from` is
// where the word being completed starts. Kinds: 'metric' (also functions and keywords),
// 'labelName' (with the metric if one precedes the braces), 'labelValue' (with label and metric).
export function completionContext(text, caret) {
  const before = text.slice(0, caret);
  const stack = [];
  let quoteChar = null;
  let stringStart = -1;
  for (let i = 0; i < before.length; i++) {
    const c = before[i];
    if (quoteChar) {
      if (c === '\\' && quoteChar !== '`') i++;
      else if (c === quoteChar) quoteChar = null;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') {
      quoteChar = c;
      stringStart = i;
    } else if (c === '#') {
      const nl = before.indexOf('\n', i);
      if (nl < 0) return null;
      i = nl;
    } else if (c === '{' || c === '(' || c === '[') {
      stack.push({ ch: c, pos: i });
    } else if (c === '}' || c === ')' || c === ']') {
      stack.pop();
    }
  }
  const top = stack[stack.length - 1];
  if (quoteChar) {
    if (!top || top.ch !== '{') return null;
    const m = /([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*$/.exec(before.slice(top.pos + 1, stringStart));
    if (!m) return null;
    return {
      kind: 'labelValue',
      label: m[1],
      metric: metricBefore(before, top.pos),
      prefix: before.slice(stringStart + 1),
      from: stringStart + 1,
      quote: quoteChar,
    };
  }
  const word = IDENT.exec(before);
  const prefix = word ? word[0] : '';
  const from = caret - prefix.length;
  if (top && top.ch === '[') return null;
  const afterOpen = (pos) => {
    const between = before.slice(pos + 1, from).trim();
    return between === '' || between.endsWith(',');
  };
  if (top && top.ch === '{') {
    return afterOpen(top.pos) ? { kind: 'labelName', metric: metricBefore(before, top.pos), prefix, from } : null;
  }
  if (top && top.ch === '(') {
    const kw = /([a-z_]+)\s*$/.exec(before.slice(0, top.pos));
    if (kw && GROUPING.has(kw[1])) return afterOpen(top.pos) ? { kind: 'labelName', metric: '', prefix, from } : null;
  }
  if (prefix === '' || /[0-9.]$/.test(before.slice(0, from))) return null;
  return { kind: 'metric', prefix, from };
}

// Candidates matching `prefix`: those starting with it first, then those containing it
// (case-insensitively); each group alphabetical.
export function rank(candidates, prefix) {
  const p = prefix.toLowerCase();
  const starts = [];
  const contains = [];
  for (const c of candidates) {
    const l = c.name.toLowerCase();
    if (l === p && c.name === prefix) continue;
    if (l.startsWith(p)) starts.push(c);
    else if (p !== '' && l.includes(p)) contains.push(c);
  }
  const byName = (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  return starts.sort(byName).concat(contains.sort(byName));
}

export class Autocomplete {
  // `input`: the textarea; `list`: the <ul> for suggestions; `status`: where load failures are said.
  constructor(input, list, status) {
    this.input = input;
    this.list = list;
    this.status = status;
    this.metricNames = [];
    this.labelNames = [];
    this.cache = new Map();
    this.items = [];
    this.selected = -1;
    this.context = null;
    this.generation = 0;
    input.addEventListener('input', () => this.update());
    input.addEventListener('click', () => this.update());
    input.addEventListener('keyup', (e) => {
      if (['ArrowLeft', 'ArrowRight', 'Home', 'End'].includes(e.key)) this.update();
    });
    input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    input.addEventListener('keydown', (e) => this.onKey(e));
  }

  // Loads metric and label names; resolves to the metric names (empty on failure, which is shown).
  async load() {
    const [names, labels] = await Promise.allSettled([
      apiGet('api/v1/label/__name__/values'),
      apiGet('api/v1/labels'),
    ]);
    const failed = [names, labels].filter((r) => r.status === 'rejected').map((r) => r.reason.message);
    if (names.status === 'fulfilled') this.metricNames = names.value.data;
    if (labels.status === 'fulfilled') this.labelNames = labels.value.data;
    this.status.textContent = failed.length ? `Autocomplete unavailable: ${failed.join('; ')}` : '';
    this.status.classList.toggle('error-text', failed.length > 0);
    return this.metricNames;
  }

  isOpen() {
    return !this.list.hidden;
  }

  close() {
    this.list.hidden = true;
    this.list.replaceChildren();
    this.items = [];
    this.selected = -1;
    this.input.removeAttribute('aria-activedescendant');
  }

  async fetchCached(key, path, params) {
    if (!this.cache.has(key)) {
      this.cache.set(key, apiGet(path, params).then((r) => r.data, () => []));
    }
    return this.cache.get(key);
  }

  async candidates(ctx) {
    const match = ctx.metric ? { 'match[]': ctx.metric } : undefined;
    if (ctx.kind === 'labelValue') {
      const values = await this.fetchCached(`v\u0000${ctx.label}\u0000${ctx.metric}`,
        `api/v1/label/${encodeURIComponent(ctx.label)}/values`, match);
      return values.map((name) => ({ name, kind: 'label value' }));
    }
    if (ctx.kind === 'labelName') {
      const names = ctx.metric
        ? await this.fetchCached(`n\u0000${ctx.metric}`, 'api/v1/labels', match)
        : this.labelNames;
      return names.filter((n) => n !== '__name__').map((name) => ({ name, kind: 'label' }));
    }
    return [
      ...this.metricNames.map((name) => ({ name, kind: 'metric' })),
      ...FUNCTIONS.map((name) => ({ name, kind: 'function' })),
      ...AGGREGATIONS.map((name) => ({ name, kind: 'aggregation' })),
      ...KEYWORDS.map((name) => ({ name, kind: 'keyword' })),
    ];
  }

  // Recomputes the suggestions for the caret's position.
  async update() {
    const generation = ++this.generation;
    const ctx = completionContext(this.input.value, this.input.selectionStart);
    if (!ctx || this.input.selectionStart !== this.input.selectionEnd) {
      this.close();
      return;
    }
    const all = await this.candidates(ctx);
    if (generation !== this.generation) return;
    this.context = ctx;
    this.items = rank(all, ctx.prefix).slice(0, MAX_SHOWN);
    this.selected = this.items.length ? 0 : -1;
    this.render();
  }

  render() {
    if (this.items.length === 0) {
      this.close();
      return;
    }
    this.list.replaceChildren(
      ...this.items.map((item, i) =>
        el(
          'li',
          {
            id: `suggestion-${i}`,
            role: 'option',
            class: `suggestion kind-${item.kind.replace(' ', '-')}`,
            'aria-selected': i === this.selected ? 'true' : 'false',
            onmousedown: (e) => {
              e.preventDefault();
              this.accept(i);
            },
          },
          el('span', { class: 'name' }, item.name),
          el('span', { class: 'kind' }, item.kind),
        ),
      ),
    );
    this.list.hidden = false;
    this.input.setAttribute('aria-activedescendant', `suggestion-${this.selected}`);
  }

  move(delta) {
    if (!this.items.length) return;
    this.selected = (this.selected + delta + this.items.length) % this.items.length;
    this.render();
    this.list.children[this.selected]?.scrollIntoView({ block: 'nearest' });
  }

  // Replaces the word being completed with item `i` (a label value is escaped and its closing
  // quote added).
  accept(i) {
    const item = this.items[i];
    const ctx = this.context;
    if (!item || !ctx) return;
    const text = this.input.value;
    const caret = this.input.selectionStart;
    let end = caret;
    let insert = item.name;
    if (ctx.kind === 'labelValue') {
      if (ctx.quote !== '`') insert = insert.replace(/\\/g, '\\\\').split(ctx.quote).join(`\\${ctx.quote}`);
      if (text[caret] !== ctx.quote) insert += ctx.quote;
      else end += 1;
    } else {
      const rest = /^[a-zA-Z0-9_:]*/.exec(text.slice(caret));
      end += rest ? rest[0].length : 0;
    }
    this.input.value = text.slice(0, ctx.from) + insert + text.slice(end);
    const pos = ctx.from + insert.length;
    this.input.setSelectionRange(pos, pos);
    this.close();
    this.input.dispatchEvent(new Event('input'));
  }

  // Keys while suggestions are shown: arrows move, Tab and Enter accept, Escape closes. Returns
  // nothing; Enter with a modifier is left to the page (execute).
  onKey(e) {
    if (!this.isOpen() || e.isComposing) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      this.move(e.key === 'ArrowDown' ? 1 : -1);
    } else if ((e.key === 'Tab' || (e.key === 'Enter' && !e.shiftKey && !e.ctrlKey && !e.metaKey)) && this.selected >= 0) {
      e.preventDefault();
      e.stopImmediatePropagation();
      this.accept(this.selected);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      this.close();
    }
  }
}
