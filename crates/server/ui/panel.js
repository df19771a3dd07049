// The span panel: everything one span recorded, and for LLM calls the
// conversation as chat bubbles. Span data is untrusted: text goes in
// through textContent only, and only http(s) values become links.

import { add, attrMap, clear, display, el, fmtCost, fmtDur, fmtInt, fmtTime, llmCall, plain, textOrLink, typeOf } from './common.js';
import { conversation } from './conversation.js';
import { markdown } from './markdown.js';

const FOLD_CHARS = 600;
const FOLD_LINES = 12;

/** Long text folded behind a toggle; the whole text is always in the page. */
function folding(node, size) {
  if (size.chars <= FOLD_CHARS && size.lines <= FOLD_LINES) return node;
  const box = el('div', 'fold folded');
  const body = el('div', 'fold-body');
  body.append(node);
  const toggle = el('button', 'fold-toggle', `show all (${fmtInt(size.chars)} characters)`);
  toggle.type = 'button';
  toggle.addEventListener('click', () => {
    const folded = box.classList.toggle('folded');
    toggle.textContent = folded ? `show all (${fmtInt(size.chars)} characters)` : 'fold';
  });
  box.append(body, toggle);
  return box;
}

function sizeOf(text) {
  return { chars: text.length, lines: text.split('\n').length };
}

/** A block of text as written (`plain`), read as Markdown (`markdown`), or
 * pretty-printed when it parses as JSON (`json`). */
function textBlock(text, mode) {
  if (mode === 'markdown') return folding(markdown(text), sizeOf(text));
  let shown = text;
  if (mode === 'json') {
    try {
      shown = JSON.stringify(JSON.parse(text), null, 2);
    } catch {
      /* not JSON: keep as written */
    }
  }
  const pre = el('pre', 'text', shown);
  return folding(pre, sizeOf(shown));
}

function copyButton(text) {
  const b = el('button', 'copy', 'copy');
  b.type = 'button';
  b.title = 'copy the value';
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'copied';
    } catch {
      b.textContent = 'cannot copy';
    }
  });
  return b;
}

/** Attributes as a typed, searchable table with copy buttons. */
function attrTable(list, searchable) {
  const wrap = el('div');
  const table = el('table', 'kv');
  const body = el('tbody');
  table.append(body);
  const rows = [];
  for (const kv of list || []) {
    const tr = el('tr');
    const value = plain(kv.value);
    const text = display(value);
    const val = el('td', 'val');
    val.append(folding(textOrLink(text), sizeOf(text)), copyButton(text));
    add(tr, el('td', 'key', kv.key), el('td', 'type', typeOf(kv.value)), val);
    tr.dataset.key = kv.key;
    body.append(tr);
    rows.push([tr, `${kv.key}\n${text}`.toLowerCase()]);
  }
  if (searchable && rows.length > 6) {
    const search = el('input', 'attr-search');
    search.type = 'search';
    search.placeholder = 'filter attributes';
    search.addEventListener('input', () => {
      const q = search.value.toLowerCase();
      for (const [tr, hay] of rows) tr.hidden = q !== '' && !hay.includes(q);
    });
    wrap.append(search);
  }
  if (!rows.length) wrap.append(el('p', 'muted', 'none'));
  else wrap.append(table);
  return wrap;
}

function section(title, ...content) {
  const s = el('section');
  s.append(el('h3', null, title), ...content);
  return s;
}

// Raster images only: an SVG could carry script (inert in <img>, but
// there is no reason to hand it to the browser at all).
const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
// Base64 text past this is not drawn (the label still says what it was).
const MAX_IMAGE_BASE64 = 16 * 1024 * 1024;

/**
 * An <img> for base64 image bytes from span data, through a blob: URL
 * (the page's policy allows no data: URLs), or null when the type is not
 * a raster image, the text is too long or is not base64.
 */
function imageOf(mime, base64) {
  const type = String(mime ?? '').toLowerCase();
  if (!IMAGE_TYPES.has(type) || typeof base64 !== 'string' || base64.length > MAX_IMAGE_BASE64) return null;
  let bytes;
  try {
    const bin = atob(base64.replace(/\s+/g, ''));
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  } catch {
    return null;
  }
  const img = el('img', 'part-image');
  img.alt = `${type} image`;
  img.src = URL.createObjectURL(new Blob([bytes], { type }));
  const done = () => URL.revokeObjectURL(img.src);
  img.addEventListener('load', done, { once: true });
  img.addEventListener('error', done, { once: true });
  return img;
}

function partNode(p, mode) {
  switch (p.type) {
    case 'text':
      return textBlock(p.content, mode);
    case 'reasoning': {
      const d = el('div', 'part-reasoning');
      d.append(el('span', 'role', 'reasoning'), textBlock(p.content, 'plain'));
      return d;
    }
    case 'tool_call': {
      const d = el('div', 'part-tool');
      d.append(el('div', 'mono', `tool call ${p.name ?? ''}${p.id ? ` (${p.id})` : ''}`));
      const args = p.arguments === undefined ? '' : typeof p.arguments === 'string' ? p.arguments : JSON.stringify(p.arguments, null, 2);
      d.append(textBlock(args, 'json'));
      return d;
    }
    case 'tool_call_response': {
      const d = el('div', 'part-tool');
      d.append(el('div', 'mono', `tool result${p.id ? ` (${p.id})` : ''}`));
      const r = p.response === undefined ? '' : typeof p.response === 'string' ? p.response : JSON.stringify(p.response, null, 2);
      d.append(textBlock(r, mode === 'markdown' ? 'plain' : mode));
      return d;
    }
    case 'blob': {
      const d = el('div', 'part-tool');
      const img = imageOf(p.mime_type, p.content);
      if (img) d.append(img);
      d.append(el('div', 'muted', `[${p.modality ?? 'blob'} ${p.mime_type ?? ''}, ${fmtInt(p.size)} base64 characters]`));
      return d;
    }
    case 'uri': {
      const d = el('div', 'part-tool');
      const data = /^data:(image\/(?:png|jpeg|gif|webp));base64,(.*)$/s.exec(String(p.uri ?? ''));
      const img = data ? imageOf(data[1], data[2]) : null;
      if (img) d.append(img);
      else add(d, `${p.modality ?? 'uri'}: `, textOrLink(String(p.uri ?? '')));
      return d;
    }
    default:
      return textBlock(`${p.label}: ${JSON.stringify(p.value, null, 2)}`, 'plain');
  }
}

function bubble(role, parts, finish, mode) {
  const r = String(role).toLowerCase();
  const cls = ['user', 'assistant', 'system', 'tool'].includes(r) ? r : 'assistant';
  const b = el('div', `bubble ${cls}`);
  b.append(el('div', 'role', role + (finish ? ` · finish: ${finish}` : '')));
  for (const p of parts) b.append(partNode(p, mode));
  return b;
}

function conversationView(convo) {
  const box = el('div');
  const label = el('div', 'convention', `read from: ${convo.convention}`);
  // How message text is shown: as written, as Markdown, or as JSON.
  const modes = [['plain', 'as written'], ['markdown', 'markdown'], ['json', 'JSON']];
  const toggle = el('div', 'view-modes');
  toggle.setAttribute('role', 'group');
  toggle.setAttribute('aria-label', 'show messages');
  const list = el('div', 'convo');
  let mode = 'plain';
  const draw = () => {
    clear(list);
    if (convo.system.length) list.append(bubble('system', convo.system, null, mode));
    for (const m of convo.input) list.append(bubble(m.role, m.parts, null, mode));
    for (const m of convo.output) list.append(bubble(m.role, m.parts, m.finish_reason, mode));
    if (!list.firstChild) list.append(el('p', 'muted', 'the span names a convention but holds no messages'));
    for (const b of toggle.children) b.setAttribute('aria-pressed', String(b.dataset.mode === mode));
  };
  for (const [value, name] of modes) {
    const b = el('button', 'view-toggle', name);
    b.type = 'button';
    b.dataset.mode = value;
    b.addEventListener('click', () => {
      mode = value;
      draw();
    });
    toggle.append(b);
  }
  draw();
  box.append(label, toggle, list);
  return box;
}

function tokensView(l, strings) {
  const t = el('div', 'tokens');
  const item = (k, v) => {
    if (v === null || v === undefined) return;
    const s = el('span');
    add(s, el('span', 'muted', `${k} `), el('strong', null, v));
    t.append(s);
  };
  item('model', l.model >= 0 ? strings[l.model] + (l.model_inherited ? ' (from parent)' : '') : null);
  item('provider', l.provider);
  item('input', l.input === null ? null : fmtInt(l.input));
  item('output', l.output === null ? null : fmtInt(l.output));
  item('cache read', l.cache_read === null ? null : fmtInt(l.cache_read));
  item('cache write', l.cache_write === null ? null : fmtInt(l.cache_write));
  item('reasoning', l.reasoning === null ? null : fmtInt(l.reasoning));
  item('total', l.total === null ? null : fmtInt(l.total));
  item('cost', l.cost_usd === null ? 'unknown (model not priced)' : `${fmtCost(l.cost_usd)} (priced as ${l.priced_as})`);
  return t;
}

/**
 * Fills `panel` with span `row` of the gantt `doc`, whose full record is
 * `span` in the native trace `trace` (null while it loads).
 */
export function showSpan(panel, doc, row, trace, actions = {}) {
  clear(panel);
  const rows = doc.rows;
  const strings = doc.strings;
  const name = strings[rows.name[row]];
  const span = trace ? trace.spans[rows.span[row]] : null;
  const h = el('h2', null, name);
  panel.append(h);
  const badges = el('div');
  badges.append(el('span', 'badge', strings[rows.svc[row]]));
  const err = doc.errors.find((e) => e.row === row);
  if (rows.err[row]) badges.append(el('span', 'badge err', `ERROR ${err ? strings[err.type] : ''}`.trim()));
  if (rows.crit[row]) badges.append(el('span', 'badge crit', '◆ critical path'));
  panel.append(badges);
  if (actions.whatIf && rows.parent[row] >= 0) {
    const b = el('button', 'whatif-add', `What-if: run ${name} concurrently with its siblings`);
    b.type = 'button';
    b.addEventListener('click', () => actions.whatIf(name));
    panel.append(b);
  }

  const total = Math.max(1, doc.total_nano);
  const dur = rows.dur[row];
  const times = [
    { key: 'duration', value: fmtDur(dur) },
    { key: 'self time', value: fmtDur(rows.self[row]) },
    { key: 'share of trace', value: `${((dur / total) * 100).toFixed(1)}%` },
    { key: 'on critical path', value: rows.crit[row] ? `yes, ${fmtDur(rows.crit_nano[row])} of its own work on it` : rows.crit_nano[row] ? `no (walk-back path: ${fmtDur(rows.crit_nano[row])})` : 'no' },
    { key: 'starts at', value: `+${fmtDur(rows.offset[row])}` },
  ];
  if (span) times.push({ key: 'start', value: fmtTime(span.start) }, { key: 'span id', value: span.span_id }, { key: 'kind', value: span.kind });
  const tt = el('table', 'kv');
  const tb = el('tbody');
  for (const t of times) add(tb, add(el('tr'), el('td', 'key', t.key), el('td', 'val', t.value)));
  tt.append(tb);
  panel.append(section('Durations', tt));

  if (!span) {
    panel.append(el('p', 'muted', 'loading span details…'));
    return;
  }

  if (err || span.status.message) {
    const box = el('div', 'exception');
    if (err) box.append(el('div', 'ex-type', err.full));
    if (span.status.message) box.append(el('div', null, span.status.message));
    for (const e of span.events.filter((e) => e.name === 'exception')) {
      const a = attrMap(e.attributes);
      box.append(el('div', 'ex-type', `${a.get('exception.type') ?? 'exception'}: ${a.get('exception.message') ?? ''}`));
      const stack = a.get('exception.stacktrace');
      if (stack) box.append(folding(el('pre', 'stack', String(stack)), sizeOf(String(stack))));
    }
    panel.append(section('Error', box));
  }

  const l = llmCall(doc, row);
  const convo = conversation(span);
  if (l || convo) {
    const s = section('LLM call');
    if (l) s.append(tokensView(l, strings));
    if (convo) s.append(conversationView(convo));
    s.classList.add('llm-section');
    panel.append(s);
  }

  panel.append(section('Attributes', attrTable(span.attributes, true)));
  const resource = typeof span.resource === 'number' ? trace.resources[span.resource] : span.resource;
  panel.append(section('Resource', attrTable(resource ? resource.attributes : [], true)));
  const scope = typeof span.scope === 'number' ? (trace.scopes || [])[span.scope] : span.scope;
  panel.append(section('Scope', el('div', 'mono', scope && (scope.name || scope.version) ? `${scope.name ?? ''} ${scope.version ?? ''}`.trim() : '(none)')));

  const events = el('div');
  for (const e of span.events) {
    events.append(el('div', 'mono', `+${fmtDur(e.time - span.start)}  ${e.name}`), attrTable(e.attributes, false));
  }
  if (!span.events.length) events.append(el('p', 'muted', 'none'));
  panel.append(section('Events', events));

  // OTLP log records written in this span, oldest first.
  const logs = (trace.logs || []).filter((r) => r.span_id === span.span_id);
  if (logs.length) {
    const box = el('div', 'span-logs');
    for (const r of logs) {
      const level = r.severity ?? (r.severity_text || 'LOG');
      const line = el('div', 'mono log-line');
      const sev = el('span', `log-level${r.severity === 'ERROR' || r.severity === 'FATAL' ? ' err' : ''}`, level);
      line.append(`+${fmtDur(r.time - span.start)}  `, sev, `  ${r.message}`);
      box.append(line);
      if (r.attributes.length) box.append(attrTable(r.attributes, false));
    }
    panel.append(section(`Logs (${logs.length})`, box));
  }

  const links = el('div');
  for (const k of span.links) {
    const a = el('a', 'mono', `${k.trace_id} / ${k.span_id}`);
    // An internal link built from hex ids only.
    if (/^[0-9a-f]{32}$/.test(k.trace_id)) a.href = `/trace/${k.trace_id}`;
    links.append(a, attrTable(k.attributes, false));
  }
  if (!span.links.length) links.append(el('p', 'muted', 'none'));
  panel.append(section('Links', links));
}

/** The panel of a folded group: what it stands for. */
export function showGroup(panel, doc, group) {
  clear(panel);
  const rows = doc.rows;
  const name = doc.strings[rows.name[group.rows[0]]];
  panel.append(el('h2', null, `${name} ×${group.rows.length}`));
  const t = el('p');
  t.textContent = group.kind === 'retry'
    ? `${group.rows.length} attempts of one call, one after another; ${group.failed} failed, ${fmtDur(group.lost_nano)} lost to the failures.`
    : `${group.rows.length} sibling calls of the same name${group.failed ? `, ${group.failed} failed` : ''}.`;
  panel.append(t, el('p', 'muted', 'Press → or click ▸ to expand the group.'));
}
