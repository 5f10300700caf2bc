// The runtime and build page (/status): `api/v1/status/runtimeinfo`, `buildinfo`, `flags` (with a
// filter) and `config` (the configuration file's text).

import { apiGet } from './api.js';
import { showAlert, table } from './format.js';

const $ = (id) => document.getElementById(id);

function keyValues(id, obj) {
  $(id).className = '';
  $(id).replaceChildren(table(['Name', 'Value'], Object.entries(obj).map(([k, v]) => [k, String(v)]), { class: 'data kv' }));
}

function renderFlags(flags) {
  const filter = $('flag-filter').value.toLowerCase();
  const rows = Object.keys(flags)
    .sort()
    .filter((k) => k.toLowerCase().includes(filter) || String(flags[k]).toLowerCase().includes(filter))
    .map((k) => [`--${k}`, flags[k]]);
  $('flags-table').className = '';
  $('flags-table').replaceChildren(table(['Flag', 'Value'], rows, { class: 'data kv', id: 'flags-data' }));
}

async function init() {
  const jobs = [
    apiGet('api/v1/status/runtimeinfo').then(({ data }) => keyValues('runtime-info', data)),
    apiGet('api/v1/status/buildinfo').then(({ data }) => keyValues('build-info', data)),
    apiGet('api/v1/status/flags').then(({ data }) => {
      renderFlags(data);
      $('flag-filter').addEventListener('input', () => renderFlags(data));
    }),
    apiGet('api/v1/status/config').then(({ data }) => {
      $('config-yaml').className = '';
      $('config-yaml').textContent = data.yaml || '# no configuration file';
    }),
  ];
  const errors = (await Promise.allSettled(jobs)).filter((r) => r.status === 'rejected').map((r) => r.reason.message);
  showAlert($('error'), errors.length ? `Error loading the status: ${errors.join('; ')}` : '');
  document.body.dataset.ready = 'true';
}

init();
