// The search page: a TraceQL box checked as you type, pickers that add
// conditions to the query, and results as a duration-over-time scatter and
// rows. The form lives in the query string; back and forward re-run it.

import { add, clear, el, fmtCost, fmtDur, fmtInt, fmtTime, getJson } from './common.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

const EXAMPLES = [
  '{ name = "api_call" && status = error && span.error.type = "RateLimitError" }',
  '{ name = "llm_call" && status = error } >> { span.error_type = "RateLimitError" || span.error.type = "RateLimitError" || span.exception.type = "RateLimitError" }',
  '{ span.gen_ai.request.model =~ "gpt-4.*" && duration > 500ms }',
  '{ status = error }',
  '{ traceDuration > 1s }',
  '{ name = "api_call" } | count() > 1',
  '{ status = error } | select(span.error.type, span.gen_ai.request.model)',
];

const FIELDS = ['q', 'service', 'operation', 'range', 'from', 'to', 'min', 'max', 'limit'];

/** A TraceQL string literal. */
const quote = (s) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;

/** A duration as TraceQL wants it, or null when it is not one. */
function durationLiteral(text) {
  const t = text.trim();
  return /^\d+(\.\d+)?(ns|us|µs|ms|s|m|h)$/.test(t) ? t.replace('µs', 'us') : null;
}

/** The whole query: the box's text and the pickers' conditions. */
function composed() {
  const parts = [];
  const q = $('q').value.trim();
  if (q) parts.push(q);
  const conds = [];
  if ($('service').value) conds.push(`resource.service.name = ${quote($('service').value)}`);
  if ($('operation').value) conds.push(`name = ${quote($('operation').value)}`);
  const min = durationLiteral($('min').value), max = durationLiteral($('max').value);
  if (min) conds.push(`traceDuration >= ${min}`);
  if (max) conds.push(`traceDuration <= ${max}`);
  if (conds.length) parts.push(`{ ${conds.join(' && ')} }`);
  if ($('errors').checked) parts.push('{ status = error }');
  return parts.join(' && ');
}

function formToParams() {
  const p = new URLSearchParams();
  for (const f of FIELDS) {
    const v = $(f).value.trim();
    if (v && !(f === 'range' && v === '1h') && !(f === 'limit' && v === '50')) p.set(f, v);
  }
  if ($('range').value !== 'custom') {
    p.delete('from');
    p.delete('to');
  }
  if ($('errors').checked) p.set('errors', '1');
  return p;
}

function paramsToForm(p) {
  for (const f of FIELDS) {
    const node = $(f);
    const v = p.get(f);
    if (node.tagName === 'SELECT') {
      const want = v ?? (f === 'range' ? '1h' : f === 'limit' ? '50' : '');
      if (want && ![...node.options].some((o) => o.value === want)) node.append(new Option(want, want));
      node.value = want;
    } else {
      node.value = v ?? '';
    }
  }
  $('errors').checked = p.get('errors') === '1';
  $('custom-range').hidden = $('range').value !== 'custom';
}

/** Marks the error under the query box, with a caret at its position. */
function showQueryError(err) {
  const box = $('q-error');
  const q = $('q');
  if (!err) {
    box.hidden = true;
    box.textContent = '';
    q.classList.remove('invalid');
    return;
  }
  q.classList.add('invalid');
  box.hidden = false;
  const text = q.value;
  if (typeof err.position === 'number' && err.position <= text.length) {
    const lines = text.split('\n');
    const line = lines[Math.max(0, (err.line || 1) - 1)] ?? '';
    box.textContent = `${line}\n${' '.repeat(Math.max(0, (err.column || 1) - 1))}^ ${err.error}`;
    box.dataset.position = String(err.position);
  } else {
    box.textContent = err.error;
    delete box.dataset.position;
  }
}

let checkSeq = 0;
async function check() {
  const seq = ++checkSeq;
  const q = $('q').value;
  if (!q.trim()) {
    showQueryError(null);
    return true;
  }
  try {
    await getJson(`/api/v1/traceql/check?q=${encodeURIComponent(q)}`);
    if (seq === checkSeq) showQueryError(null);
    return true;
  } catch (e) {
    if (seq === checkSeq) showQueryError(e.body && e.body.error ? e.body : { error: e.message });
    return false;
  }
}

function rangeParams(p) {
  const out = new URLSearchParams();
  if ($('range').value === 'custom') {
    const from = $('from').value, to = $('to').value;
    if (from) out.set('start', new Date(from).toISOString());
    if (to) out.set('end', new Date(to).toISOString());
    if (!from) out.set('since', '24h');
  } else {
    out.set('since', $('range').value);
  }
  for (const [k, v] of out) p.set(k, v);
}

let searchSeq = 0;
async function runSearch() {
  const seq = ++searchSeq;
  const status = $('status');
  status.classList.remove('error');
  if (!(await check())) {
    status.textContent = 'fix the query first';
    status.classList.add('error');
    return;
  }
  const p = new URLSearchParams();
  const q = composed();
  if (q) p.set('q', q);
  p.set('limit', $('limit').value);
  rangeParams(p);
  status.textContent = q ? `searching ${q}` : 'latest traces';
  let answer;
  try {
    answer = await getJson(`/api/v1/search?${p}`);
  } catch (e) {
    if (seq !== searchSeq) return;
    status.textContent = e.message;
    status.classList.add('error');
    draw([]);
    return;
  }
  if (seq !== searchSeq) return;
  const n = answer.traces.length;
  status.textContent = `${n} trace${n === 1 ? '' : 's'}${answer.truncated ? ` (stopped after reading ${fmtInt(answer.inspected)} traces: narrow the time range)` : ''}${q ? ` for ${q}` : ''}`;
  draw(answer.traces);
}

function openTrace(id) {
  location.assign(`/trace/${encodeURIComponent(id)}`);
}

function draw(traces) {
  drawScatter(traces);
  const body = $('hits').querySelector('tbody');
  clear(body);
  const longest = Math.max(1, ...traces.map((t) => t.duration_nano));
  for (const t of traces) {
    const tr = el('tr');
    tr.dataset.traceId = t.trace_id;
    const link = el('a', 'root-link', t.root_name ?? '(root missing)');
    link.href = `/trace/${encodeURIComponent(t.trace_id)}`;
    const root = add(el('td'), link);
    const matched = matchedLine(t);
    if (matched) root.append(matched);
    const bar = el('div', 'durbar');
    bar.style.width = `${(t.duration_nano / longest) * 100}%`;
    const errors = el('td', `num${t.error_count ? ' err-count' : ''}`, fmtInt(t.error_count));
    add(tr,
      root,
      el('td', null, t.root_service ?? ''),
      el('td', 'mono', fmtTime(t.start_unix_nano)),
      el('td', 'num', fmtDur(t.duration_nano)),
      add(el('td', 'durcell'), bar),
      el('td', 'num', fmtInt(t.span_count)),
      errors,
      el('td', 'num', t.llm_tokens ? fmtInt(t.llm_tokens) : '–'),
      el('td', 'num', t.llm_cost_usd ? fmtCost(t.llm_cost_usd) : '–'));
    tr.addEventListener('click', (e) => {
      if (e.target.closest('a')) return;
      openTrace(t.trace_id);
    });
    body.append(tr);
  }
}

/** How many of the trace's spans the query matched (its spanset), the
 * first few by name — each a link to that span — with the attributes a
 * `select(...)` asked for; null when the answer names none. */
function matchedLine(t) {
  const spans = t.matched || [];
  if (!spans.length) return null;
  const d = el('div', 'matched');
  d.append(el('span', 'muted', `${fmtInt(spans.length)} matched: `));
  spans.slice(0, 3).forEach((m, i) => {
    if (i) d.append(', ');
    const a = el('a', 'mono', m.name);
    // Internal links from hex ids only.
    if (/^[0-9a-f]{32}$/.test(t.trace_id) && /^[0-9a-f]{16}$/.test(m.span_id)) {
      a.href = `/trace/${t.trace_id}?span=${m.span_id}`;
    }
    d.append(a);
    const attrs = Object.entries(m.attributes || {});
    if (attrs.length) {
      const text = attrs.map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(', ');
      d.append(el('span', 'muted', ` (${text})`));
    }
  });
  if (spans.length > 3) d.append(el('span', 'muted', ` … and ${fmtInt(spans.length - 3)} more`));
  return d;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

function drawScatter(traces) {
  const s = $('scatter');
  clear(s);
  const w = s.clientWidth || 800, h = s.clientHeight || 180;
  const pad = { l: 56, r: 12, t: 10, b: 20 };
  s.setAttribute('viewBox', `0 0 ${w} ${h}`);
  if (!traces.length) {
    const t = svg('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle' });
    t.textContent = 'no traces';
    s.append(t);
    return;
  }
  const t0 = Math.min(...traces.map((t) => t.start_unix_nano));
  const t1 = Math.max(...traces.map((t) => t.start_unix_nano));
  const dmax = Math.max(1, ...traces.map((t) => t.duration_nano));
  const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * (w - pad.l - pad.r);
  const y = (d) => h - pad.b - (d / dmax) * (h - pad.t - pad.b);
  s.append(svg('line', { x1: pad.l, y1: h - pad.b, x2: w - pad.r, y2: h - pad.b }));
  s.append(svg('line', { x1: pad.l, y1: pad.t, x2: pad.l, y2: h - pad.b }));
  const label = (tx, ty, text, anchor) => {
    const e = svg('text', { x: tx, y: ty, 'text-anchor': anchor });
    e.textContent = text;
    s.append(e);
  };
  label(pad.l - 4, pad.t + 8, fmtDur(dmax), 'end');
  label(pad.l - 4, h - pad.b, '0', 'end');
  label(pad.l, h - 4, fmtTime(t0).slice(11), 'start');
  label(w - pad.r, h - 4, fmtTime(t1).slice(11), 'end');
  for (const t of traces) {
    const dot = svg('circle', { cx: x(t.start_unix_nano), cy: y(t.duration_nano), r: 5, class: `dot${t.error_count ? ' err' : ''}` });
    dot.dataset.traceId = t.trace_id;
    const title = svg('title', {});
    title.textContent = `${t.root_name ?? ''} · ${fmtDur(t.duration_nano)} · ${fmtTime(t.start_unix_nano)}`;
    dot.append(title);
    dot.addEventListener('click', () => openTrace(t.trace_id));
    s.append(dot);
  }
}

async function loadServices() {
  try {
    const r = await getJson('/api/services');
    for (const name of r.data || []) $('service').append(new Option(name, name));
  } catch {
    /* the pickers stay at "any" */
  }
}

async function loadOperations(keep) {
  const op = $('operation');
  while (op.options.length > 1) op.remove(1);
  const svc = $('service').value;
  if (!svc) return;
  try {
    const r = await getJson(`/api/services/${encodeURIComponent(svc)}/operations`);
    for (const name of r.data || []) op.append(new Option(name, name));
    if (keep && [...op.options].some((o) => o.value === keep)) op.value = keep;
  } catch {
    /* keep "any" */
  }
}

function submit(push) {
  const url = `/${formToParams().toString() ? `?${formToParams()}` : ''}`;
  if (url !== location.pathname + location.search) {
    if (push) history.pushState(null, '', url);
    else history.replaceState(null, '', url);
  }
  runSearch();
}

async function main() {
  for (const ex of EXAMPLES) {
    const b = el('button', 'example', ex);
    b.type = 'button';
    b.addEventListener('click', () => {
      $('q').value = ex;
      submit(true);
    });
    $('examples').append(b);
  }
  const params = new URLSearchParams(location.search);
  await loadServices();
  paramsToForm(params);
  await loadOperations(params.get('operation'));
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    submit(true);
  });
  $('q').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      submit(true);
    }
  });
  let timer = 0;
  $('q').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(check, 200);
  });
  $('service').addEventListener('change', () => loadOperations(null));
  $('range').addEventListener('change', () => {
    $('custom-range').hidden = $('range').value !== 'custom';
  });
  window.addEventListener('popstate', async () => {
    const p = new URLSearchParams(location.search);
    paramsToForm(p);
    await loadOperations(p.get('operation'));
    runSearch();
  });
  await runSearch();
  document.body.dataset.ready = 'true';
}

main();
