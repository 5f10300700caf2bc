// Requests to Strata's Prometheus HTTP API. URLs are relative to the page, so the UI works under
// any path prefix a proxy adds. Every failure becomes an ApiError whose message says what went
// wrong: the API's own error text, a non-JSON answer, or an unreachable server.

export class ApiError extends Error {
  constructor(message, status = 0, errorType = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.errorType = errorType;
  }
}

function url(path, params) {
  const u = new URL(path, document.baseURI);
  for (const [k, v] of Object.entries(params || {})) {
    for (const one of Array.isArray(v) ? v : [v]) {
      if (one !== undefined && one !== null && one !== '') u.searchParams.append(k, one);
    }
  }
  return u;
}

async function send(u, init) {
  let resp;
  try {
    resp = await fetch(u, init);
  } catch (e) {
    throw new ApiError(`cannot reach the server: ${e.message}`);
  }
  const text = await resp.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    const excerpt = text.trim().slice(0, 500) || resp.statusText;
    throw new ApiError(`HTTP ${resp.status} from ${u.pathname}: ${excerpt}`, resp.status);
  }
  if (body.status !== 'success') {
    const type = body.errorType || 'error';
    throw new ApiError(`${type}: ${body.error || `HTTP ${resp.status}`}`, resp.status, type);
  }
  return { data: body.data, warnings: body.warnings || [] };
}

// GET an API path (relative, e.g. "api/v1/labels"); resolves to {data, warnings}.
export function apiGet(path, params) {
  return send(url(path, params), { headers: { Accept: 'application/json' } });
}

// POST a form to an API path (queries: an expression may be too long for a URL).
export function apiPost(path, params) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') body.append(k, v);
  }
  return send(url(path), { method: 'POST', body, headers: { Accept: 'application/json' } });
}

// GET a text document (e.g. "metrics"); throws ApiError on a non-2xx answer.
export async function fetchText(path) {
  const u = url(path);
  let resp;
  try {
    resp = await fetch(u);
  } catch (e) {
    throw new ApiError(`cannot reach the server: ${e.message}`);
  }
  const text = await resp.text();
  if (!resp.ok) throw new ApiError(`HTTP ${resp.status} from ${u.pathname}: ${text.slice(0, 500)}`, resp.status);
  return text;
}
