// Unit tests of the UI's pure functions, run with `node --test web/test` (tests/web_ui.rs runs them).

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { completionContext, rank } from '../assets/js/autocomplete.js';
import { align, stack } from '../assets/js/chart.js';
import { formatDuration, formatLabels, formatTime, parseDuration, parseTime } from '../assets/js/format.js';

// The context at the end of `text`, or at the `|` in it.
function at(text) {
  const caret = text.indexOf('|');
  return caret < 0 ? completionContext(text, text.length) : completionContext(text.replace('|', ''), caret);
}

test('metric names where an expression starts', () => {
  assert.deepEqual(at('up'), { kind: 'metric', prefix: 'up', from: 0 });
  assert.deepEqual(at('sum(rate(http_req'), { kind: 'metric', prefix: 'http_req', from: 9 });
  assert.deepEqual(at('a + b|c'), { kind: 'metric', prefix: 'b', from: 4 });
  assert.equal(at(''), null);
  assert.equal(at('up '), null);
  assert.equal(at('rate(x[5m'), null, 'no completion inside a range');
  assert.equal(at('x offset 5m'), null);
  assert.equal(at('up # comment'), null);
});

test('label names inside braces and grouping clauses', () => {
  assert.deepEqual(at('up{'), { kind: 'labelName', metric: 'up', prefix: '', from: 3 });
  assert.deepEqual(at('up{job="a", inst'), { kind: 'labelName', metric: 'up', prefix: 'inst', from: 12 });
  assert.deepEqual(at('{jo'), { kind: 'labelName', metric: '', prefix: 'jo', from: 1 });
  assert.deepEqual(at('sum by (jo'), { kind: 'labelName', metric: '', prefix: 'jo', from: 8 });
  assert.deepEqual(at('sum without(a, '), { kind: 'labelName', metric: '', prefix: '', from: 15 });
  assert.equal(at('up{job='), null, 'after the operator a value comes, in quotes');
  assert.equal(at('up{job="a"}'), null);
});

test('label values inside a quoted matcher value', () => {
  assert.deepEqual(at('up{job="'), { kind: 'labelValue', label: 'job', metric: 'up', prefix: '', from: 8, quote: '"' });
  assert.deepEqual(at('rate(http_requests_total{code=~"5'), {
    kind: 'labelValue', label: 'code', metric: 'http_requests_total', prefix: '5', from: 32, quote: '"',
  });
  assert.deepEqual(at("up{a='x\\'y"), { kind: 'labelValue', label: 'a', metric: 'up', prefix: "x\\'y", from: 6, quote: "'" });
  assert.equal(at('label_replace(up, "dst'), null, 'a string argument is not a matcher');
  assert.deepEqual(at('up{job="a", x="}"} + b'), { kind: 'metric', prefix: 'b', from: 21 }, 'a brace in a string is text');
});

test('ranking puts prefix matches first', () => {
  const c = ['rate', 'irate', 'up', 'rat'].map((name) => ({ name, kind: 'x' }));
  assert.deepEqual(rank(c, 'rat').map((x) => x.name), ['rate', 'irate']);
  assert.deepEqual(rank(c, '').map((x) => x.name), ['irate', 'rat', 'rate', 'up']);
});

test('series align on the step grid; stacking sums and keeps gaps', () => {
  const { xs, ys } = align([{ values: [[10, '1'], [30, '3']] }, { values: [[20, '2'], [30, 'NaN']] }], 10, 30, 10);
  assert.deepEqual(xs, [10, 20, 30]);
  assert.deepEqual(ys[0], [1, null, 3]);
  assert.deepEqual(ys[1].slice(0, 2), [null, 2]);
  assert.ok(Number.isNaN(ys[1][2]));
  assert.deepEqual(stack([[1, null, 3], [1, 2, 4]]), [[1, null, 3], [2, 2, 7]]);
});

test('durations, times and labels', () => {
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('500ms'), 0.5);
  assert.equal(parseDuration('90'), 90);
  assert.equal(parseDuration('1x'), null);
  assert.equal(parseDuration('h'), null);
  assert.equal(formatDuration(5400), '1h30m');
  assert.equal(formatDuration(14), '14s');
  assert.equal(parseTime(''), null);
  assert.equal(parseTime('2023-11-14 22:13:20'), 1700000000);
  assert.equal(parseTime('1700000000.5'), 1700000000.5);
  assert.ok(Number.isNaN(parseTime('yesterday')));
  assert.equal(formatTime(1700000000), '2023-11-14 22:13:20');
  assert.equal(formatLabels({ __name__: 'up', job: 'a"b', instance: 'x' }), 'up{instance="x", job="a\\"b"}');
  assert.equal(formatLabels({}), '{}');
  assert.equal(formatLabels({ job: 'a' }), '{job="a"}');
});
