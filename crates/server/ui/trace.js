// The trace page: header, Gantt and span panel of /trace/{id}. State lives
// in the query string (selected span, find text and mode, critical-path-only,
// zoom), so links can be shared and back/forward step through selections.

import { attrMap, clear, el, fmtCost, fmtDur, fmtInt, fmtTime, getJson, display } from './common.js';
import { Gantt } from './gantt.js';
import { showGroup, showSpan } from './panel.js';

const $ = (id) => document.getElementById(id);

const traceId = decodeURIComponent(location.pathname.replace(/^\/trace\//, '').replace(/\/$/, ''));
let doc = null;
let gantt = null;
let fullTrace = null;
let fullTraceLoad = null;
let applying = false;

function summary(d) {
  const h = d.header;
  const box = $('summary');
  const item = (k, v, cls) => {
    const i = el('div', 'item');
    i.append(el('span', 'k', k), el('span', `v${cls ? ` ${cls}` : ''}`, v));
    i.dataset.key = k;
    box.append(i);
  };
  item('root', `${h.root ?? '(root missing)'}${h.root_service ? ` · ${h.root_service}` : ''}`);
  item('services', h.services.join(', '));
  item('start', fmtTime(h.start_unix_nano));
  item('duration', fmtDur(h.duration_nano));
  item('spans', fmtInt(h.spans));
  item('errors', fmtInt(h.errors), h.errors ? 'err' : '');
  item('LLM calls', fmtInt(h.llm_calls));
  item('tokens', `${fmtInt(h.input_tokens)} in · ${fmtInt(h.output_tokens)} out`);
  item('cost', fmtCost(h.cost_usd) + (h.unpriced_calls ? ` (+${h.unpriced_calls} unpriced)` : ''));
  item('critical path', `${fmtDur(h.critical_path_nano)} · ${h.critical_path_spans} spans`);
  $('trace-title').textContent = `${h.root ?? 'trace'} — ${d.trace_id}`;
  document.title = `${h.root ?? 'trace'} — chaintrace`;
}

// One span's record, fetched alone (`/spans/{id or index}`): the panel of
// a 100 000-span trace needs a few KB, not the whole trace.
const spanIds = new Map();
const spanLoads = new Map();
function loadSpan(ref) {
  if (!spanLoads.has(ref)) {
    spanLoads.set(ref, getJson(`/api/v1/traces/${encodeURIComponent(traceId)}/spans/${encodeURIComponent(ref)}`).then((a) => {
      const one = { spans: [], resources: a.trace.resources, scopes: a.trace.scopes, logs: a.trace.logs || [] };
      one.spans[a.index] = a.trace.spans[0];
      spanIds.set(a.index, a.trace.spans[0].span_id);
      return { index: a.index, trace: one };
    }));
    // Found by id, it is then known by its index too.
    spanLoads.get(ref).then((r) => spanLoads.set(String(r.index), Promise.resolve(r)), () => {});
  }
  return spanLoads.get(ref);
}

function loadTrace() {
  if (!fullTraceLoad) {
    fullTraceLoad = getJson(`/api/v1/traces/${encodeURIComponent(traceId)}`).then((t) => {
      fullTrace = t;
      return t;
    });
  }
  return fullTraceLoad;
}

// ---- URL state ----

function readState() {
  const p = new URLSearchParams(location.search);
  return {
    span: p.get('span'),
    group: p.get('group'),
    find: p.get('find') || '',
    mode: p.get('mode') === 'dim' ? 'dim' : 'hide',
    crit: p.get('crit') === '1',
    from: p.has('from') ? Number(p.get('from')) : null,
    to: p.has('to') ? Number(p.get('to')) : null,
  };
}

function writeState(push) {
  if (applying || !gantt) return;
  const p = new URLSearchParams();
  const sel = gantt.selected;
  if (sel !== null && sel >= 0) {
    // The span's id once known (it survives spans arriving later); its
    // index in the trace until then.
    const index = doc.rows.span[sel];
    p.set('span', spanIds.get(index) ?? fullTrace?.spans[index]?.span_id ?? String(index));
  }
  else if (sel !== null) p.set('group', String(doc.groups[-sel - 1].rows[0]));
  const find = $('find').value.trim();
  if (find) {
    p.set('find', find);
    if ($('find-mode').value === 'dim') p.set('mode', 'dim');
  }
  if (gantt.critOnly) p.set('crit', '1');
  const [a, b] = gantt.view;
  if (a > 0 || b < gantt.total) {
    p.set('from', String(Math.round(a)));
    p.set('to', String(Math.round(b)));
  }
  const qs = p.toString();
  const url = `${location.pathname}${qs ? `?${qs}` : ''}`;
  if (url === location.pathname + location.search) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

function applyState() {
  const s = readState();
  applying = true;
  try {
    $('find').value = s.find;
    $('find-mode').value = s.mode;
    $('crit-only').checked = s.crit;
    gantt.critOnly = s.crit;
    applyFind(false);
    if (s.from !== null && s.to !== null && isFinite(s.from) && isFinite(s.to) && s.to > s.from) gantt.setView(s.from, s.to);
    else gantt.setView(0, gantt.total);
    if (s.span !== null && /^[0-9a-fA-F]{16}$/.test(s.span)) {
      // A span id: the server says where it is in the trace.
      loadSpan(s.span).then(({ index }) => {
        const row = rowOfSpan(index);
        if (row >= 0) {
          gantt.reveal(row);
          open(row);
        }
      }, () => {});
    } else if (s.span !== null && /^[0-9]+$/.test(s.span)) {
      const row = rowOfSpan(Number(s.span));
      if (row >= 0) {
        gantt.reveal(row);
        open(row);
      }
    } else if (s.group !== null) {
      const g = doc.groups.findIndex((x) => x.rows[0] === Number(s.group));
      if (g >= 0) {
        gantt.select(-(g + 1));
        open(-(g + 1));
      }
    }
  } finally {
    applying = false;
  }
}

let spanToRow = null;
function rowOfSpan(spanIndex) {
  if (!spanToRow) {
    spanToRow = new Map();
    doc.rows.span.forEach((s, r) => spanToRow.set(s, r));
  }
  return spanToRow.get(spanIndex) ?? -1;
}

// ---- panel ----

let shown = null;
function open(item) {
  shown = item;
  const panel = $('panel');
  if (item < 0) {
    showGroup(panel, doc, doc.groups[-item - 1]);
    return;
  }
  showSpan(panel, doc, item, fullTrace, actions);
  if (!fullTrace) {
    loadSpan(String(doc.rows.span[item])).then(({ trace }) => {
      if (shown !== item) return;
      showSpan(panel, doc, item, trace, actions);
      writeState(false);
    }, (e) => {
      panel.append(el('p', 'load-error', `cannot load span details: ${e.message}`));
    });
  }
}

// ---- what-if: the analysis API reschedules chosen siblings ----

const whatIfNames = new Set();
const actions = {
  whatIf(name) {
    whatIfNames.add(name);
    drawWhatIf();
  },
};

function drawWhatIf() {
  if (gantt) gantt.setWhatIf(null);
  const box = $('whatif');
  box.hidden = whatIfNames.size === 0;
  const names = $('whatif-names');
  clear(names);
  for (const n of whatIfNames) names.append(el('span', 'chip', n));
  clear($('whatif-result'));
}

async function runWhatIf() {
  const out = $('whatif-result');
  clear(out);
  out.textContent = 'computing…';
  const names = [...whatIfNames].join(',');
  try {
    const a = await getJson(`/api/v1/traces/${encodeURIComponent(traceId)}/analysis?parallel=${encodeURIComponent(names)}`);
    const w = a.what_if;
    out.className = `whatif-result${w && w.saved_nano > 0 ? ' saved' : ''}`;
    out.textContent = w
      ? `${fmtDur(a.duration_nano)} → ${fmtDur(w.duration_nano)} (saves ${fmtDur(w.saved_nano)}); critical path: ${w.critical_path.map((p) => p.name).join(' → ')} (outlined in the chart)`
      : 'no change';
    // The new critical path, outlined beside the observed one's marks.
    if (w) {
      const rowOf = new Map();
      doc.rows.span.forEach((spanIndex, r) => rowOf.set(spanIndex, r));
      gantt.setWhatIf(new Set(w.critical_path.map((p) => rowOf.get(p.span_index)).filter((r) => r !== undefined)));
    }
  } catch (e) {
    out.className = 'whatif-result';
    out.textContent = `cannot compute: ${e.message}`;
  }
}

// ---- find ----

let findTimer = 0;
let findSeq = 0;

// A find text starting with "{" is a TraceQL query, run by the server on
// this trace (`/match`); its matches are span indexes.
async function applyTraceQL(text, mode) {
  const seq = ++findSeq;
  const count = $('find-count');
  try {
    const m = await getJson(`/api/v1/traces/${encodeURIComponent(traceId)}/match?q=${encodeURIComponent(text)}`);
    if (seq !== findSeq) return;
    const picked = new Set(m.spans);
    const n = gantt.setFilter((r) => picked.has(doc.rows.span[r]), mode);
    count.textContent = `${fmtInt(n)} match${n === 1 ? '' : 'es'} (TraceQL)` +
      (m.stopped ? ` — stopped: ${m.stopped.detail}` : '');
    count.classList.remove('err');
  } catch (e) {
    if (seq !== findSeq) return;
    gantt.setFilter(null);
    count.textContent = e.message;
    count.classList.add('err');
  }
}

function applyFind(loadAttrs = true) {
  const raw = $('find').value.trim();
  const q = raw.toLowerCase();
  const mode = $('find-mode').value;
  $('find-count').classList.remove('err');
  if (!q) {
    findSeq++;
    gantt.setFilter(null);
    $('find-count').textContent = '';
    return;
  }
  if (raw.startsWith('{')) {
    applyTraceQL(raw, mode);
    return;
  }
  findSeq++;
  const rows = doc.rows;
  const s = doc.strings;
  const errType = gantt.errType;
  const model = new Map();
  doc.llm.row.forEach((r, i) => {
    if (doc.llm.model[i] >= 0) model.set(r, s[doc.llm.model[i]]);
  });
  const attrText = fullTrace ? (r) => {
    const span = fullTrace.spans[rows.span[r]];
    for (const kv of span.attributes) {
      if (kv.key.toLowerCase().includes(q)) return true;
      const v = attrMap([kv]).get(kv.key);
      if (display(v).toLowerCase().includes(q)) return true;
    }
    return false;
  } : () => false;
  const lower = s.map((x) => x.toLowerCase());
  const count = gantt.setFilter((r) =>
    lower[rows.name[r]].includes(q) ||
    lower[rows.svc[r]].includes(q) ||
    (errType.get(r) || '').toLowerCase().includes(q) ||
    (model.get(r) || '').toLowerCase().includes(q) ||
    attrText(r), mode);
  $('find-count').textContent = `${fmtInt(count)} match${count === 1 ? '' : 'es'}${fullTrace ? '' : ' (attribute values: loading…)'}`;
  if (!fullTrace && loadAttrs) loadTrace().then(() => applyFind(false)).catch(() => {});
}

// ---- start ----

async function main() {
  if (!/^[0-9a-fA-F]{1,32}$/.test(traceId)) {
    const e = $('load-error');
    e.hidden = false;
    e.textContent = `"${traceId}" is not a trace id (1 to 32 hex digits).`;
    return;
  }
  try {
    doc = await getJson(`/api/v1/traces/${encodeURIComponent(traceId)}/gantt`);
    performance.mark('chaintrace:gantt-loaded');
  } catch (err) {
    const e = $('load-error');
    e.hidden = false;
    e.textContent = `cannot load trace ${traceId}: ${err.message}`;
    $('trace-title').textContent = 'no trace';
    return;
  }
  summary(doc);
  gantt = new Gantt(doc, {
    scroll: $('gantt'),
    space: $('gantt-space'),
    axis: $('axis'),
    minimap: $('minimap'),
    count: $('row-count'),
  }, {
    onOpen: (item) => {
      open(item);
      writeState(true);
    },
    onChange: () => writeState(false),
  });
  // Marks for scripts/bench-ui: the rows exist now and paint next frame.
  performance.mark('chaintrace:rows-built');
  requestAnimationFrame(() => performance.mark('chaintrace:first-rows'));
  gantt.drawMinimapSoon();
  applyState();
  $('expand-all').addEventListener('click', () => gantt.expandAll());
  $('collapse-all').addEventListener('click', () => gantt.collapseAll());
  $('depth').addEventListener('change', (e) => {
    if (e.target.value) gantt.collapseToDepth(Number(e.target.value));
    else gantt.expandAll();
  });
  $('crit-only').addEventListener('change', (e) => {
    gantt.setCritOnly(e.target.checked);
    writeState(true);
  });
  $('find').addEventListener('input', () => {
    clearTimeout(findTimer);
    findTimer = setTimeout(() => {
      applyFind();
      writeState(false);
    }, 120);
  });
  $('find-mode').addEventListener('change', () => {
    applyFind();
    writeState(false);
  });
  $('reset-zoom').addEventListener('click', () => gantt.resetView());
  $('whatif-run').addEventListener('click', runWhatIf);
  $('whatif-clear').addEventListener('click', () => {
    whatIfNames.clear();
    drawWhatIf();
  });
  window.addEventListener('popstate', () => applyState());
  $('gantt').focus({ preventScroll: true });
  requestAnimationFrame(() => {
    performance.mark('chaintrace:interactive');
    document.body.dataset.ready = 'true';
  });
}

main();
