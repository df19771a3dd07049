// Shared helpers of the chaintrace pages. Everything that comes from span
// data is untrusted: it only ever reaches the page through textContent,
// attribute setters of non-executable attributes, or safeHref().

/** Creates an element with a class and text (as text, never as HTML). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Appends children (elements or strings, as text) and returns the parent. */
export function add(parent, ...children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.append(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return parent;
}

/** Removes every child of `node`. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

/** `value` as a link target if it is an absolute http(s) URL, else null. */
export function safeHref(value) {
  if (typeof value !== 'string') return null;
  const text = value.trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const u = new URL(text);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}

/** Text, or a link that opens in a new tab when the text is an http(s) URL. */
export function textOrLink(value) {
  const href = safeHref(value);
  if (!href) return document.createTextNode(String(value));
  const a = el('a', null, value);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

/** Nanoseconds as a short human duration. */
export function fmtDur(ns) {
  if (ns === null || ns === undefined || !isFinite(ns)) return '–';
  const a = Math.abs(ns);
  if (a < 1e3) return `${ns} ns`;
  if (a < 1e6) return `${trim(ns / 1e3)} µs`;
  if (a < 1e9) return `${trim(ns / 1e6)} ms`;
  if (a < 60e9) return `${trim(ns / 1e9)} s`;
  const m = Math.floor(a / 60e9);
  return `${m} min ${Math.round((a - m * 60e9) / 1e9)} s`;
}

function trim(x) {
  return x >= 100 ? String(Math.round(x)) : x >= 10 ? x.toFixed(1).replace(/\.0$/, '') : x.toFixed(2).replace(/\.?0+$/, '');
}

/** Unix nanoseconds as local date and time with milliseconds. */
export function fmtTime(unixNs) {
  const d = new Date(Number(unixNs) / 1e6);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

export function fmtInt(n) {
  return n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US');
}

export function fmtCost(usd) {
  if (usd === null || usd === undefined) return '–';
  if (usd === 0) return '$0';
  return usd < 0.01 ? `$${usd.toFixed(5)}` : `$${usd.toFixed(4)}`;
}

/** GET a JSON document; rejects with the server's `error` text. */
export async function getJson(url) {
  const r = await fetch(url, { headers: { accept: 'application/json' } });
  if (r.status === 401) {
    // The server has keys and this browser's sign-in ended: sign in, then come back.
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
  }
  let body = null;
  try {
    body = await r.json();
  } catch {
    throw new Error(`${url}: HTTP ${r.status}, not JSON`);
  }
  if (!r.ok) {
    const e = new Error(body && body.error ? body.error : `HTTP ${r.status}`);
    e.body = body;
    e.status = r.status;
    throw e;
  }
  return body;
}

/**
 * The LLM call drawn on `row` of a `/gantt` answer, or null. The answer's
 * `llm` is columnar (`llm.input[i]` is call i's input tokens); the first
 * lookup indexes the calls by row, once per answer. The object names the
 * model by `strings` index and the provider and price entry by name.
 */
export function llmCall(doc, row) {
  const c = doc.llm;
  if (!c.byRow) {
    c.byRow = new Map();
    for (let i = 0; i < c.row.length; i++) c.byRow.set(c.row[i], i);
  }
  const i = c.byRow.get(row);
  if (i === undefined) return null;
  const str = (k) => (k >= 0 ? doc.strings[k] : null);
  return {
    row,
    model: c.model[i],
    model_inherited: c.model_inherited[i] === 1,
    provider: str(c.provider[i]),
    input: c.input[i],
    output: c.output[i],
    cache_read: c.cache_read[i],
    cache_write: c.cache_write[i],
    reasoning: c.reasoning[i],
    total: c.total[i],
    cost_usd: c.cost_usd[i],
    priced_as: str(c.priced_as[i]),
    counted: c.counted[i] === 1,
  };
}

/** Converts a native-API attribute value ({"string": …}, {"int": …}, …) to JS. */
export function plain(v) {
  if (v === null || v === undefined || v === 'empty') return null;
  if (typeof v !== 'object') return v;
  if ('string' in v) return v.string;
  if ('int' in v) return v.int;
  if ('double' in v) return v.double;
  if ('bool' in v) return v.bool;
  if ('bytes' in v) return `bytes(${(v.bytes || []).length})`;
  if ('array' in v) return (v.array || []).map(plain);
  if ('kv_list' in v) {
    const o = {};
    for (const kv of v.kv_list || []) o[kv.key] = plain(kv.value);
    return o;
  }
  return null;
}

/** The type name of a native-API attribute value. */
export function typeOf(v) {
  if (v === 'empty' || v === null || v === undefined) return 'empty';
  return typeof v === 'object' ? Object.keys(v)[0] || '?' : typeof v;
}

/** A value as display text: strings as they are, the rest as JSON. */
export function display(v) {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v, null, 2);
  } catch {
    return String(v);
  }
}

/** Attribute list → Map key → plain value (first occurrence wins). */
export function attrMap(list) {
  const m = new Map();
  for (const kv of list || []) if (!m.has(kv.key)) m.set(kv.key, plain(kv.value));
  return m;
}

/**
 * When this browser is signed in (the server has API keys), names the key
 * in the top bar, linking to the page that signs out.
 */
async function showSignedIn() {
  const bar = document.querySelector('.topbar');
  if (!bar || document.body.classList.contains('login-page')) return;
  let who;
  try {
    const r = await fetch('/api/v1/whoami', { headers: { accept: 'application/json' } });
    if (!r.ok) return;
    who = await r.json();
  } catch {
    return;
  }
  if (!who.signed_in) return;
  const a = document.createElement('a');
  a.className = 'topbar-link topbar-user';
  a.href = '/login';
  a.title = `tenant ${who.tenant}; may ${who.scopes.join(', ')}. Sign out here.`;
  const name = document.createElement('span');
  name.textContent = who.key;
  const action = document.createElement('span');
  action.className = 'topbar-user-action';
  action.textContent = ' · sign out';
  a.append(name, action);
  bar.append(a);
}
showSignedIn();
