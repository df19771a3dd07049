// The sessions pages: `/sessions` lists the sessions of a time range,
// `/sessions/{id}` shows one as a transcript (each turn's question and
// answer as chat bubbles, with latency, tokens, cost and errors) above a
// timeline of its turns. The range and user live in the query string.

import { add, clear, el, fmtCost, fmtDur, fmtInt, fmtTime, getJson } from './common.js';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

/** The session id in the path, or null on the list page. */
function sessionId() {
  const m = location.pathname.match(/^\/sessions\/(.+)$/);
  if (!m) return null;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return null;
  }
}

function params() {
  const p = new URLSearchParams(location.search);
  return { since: p.get('since') || '24h', user: p.get('user') || '' };
}

function fillForm() {
  const { since, user } = params();
  $('since').value = [...$('since').options].some((o) => o.value === since) ? since : '24h';
  $('user').value = user;
  $('user-label').hidden = sessionId() !== null;
}

function query(extra) {
  const { since, user } = params();
  const p = new URLSearchParams({ since, ...extra });
  if (user && sessionId() === null) p.set('user', user);
  return p;
}

function sessionHref(id) {
  const p = new URLSearchParams(location.search);
  p.delete('user');
  const q = p.toString();
  return `/sessions/${encodeURIComponent(id)}${q ? `?${q}` : ''}`;
}

function tokens(x) {
  return (x.input_tokens || 0) + (x.output_tokens || 0);
}

/** Cost, or "unpriced" when calls had no price and nothing was priced. */
function cost(x) {
  if (x.unpriced_calls > 0 && !x.cost_usd) return 'unpriced';
  return fmtCost(x.cost_usd || 0);
}

async function showList() {
  $('list').hidden = false;
  $('session').hidden = true;
  $('page-title').textContent = 'sessions';
  document.title = 'chaintrace — sessions';
  $('status').textContent = 'loading…';
  let answer;
  try {
    answer = await getJson(`/api/v1/sessions?${query({ limit: '200' })}`);
  } catch (e) {
    $('status').textContent = `could not load sessions: ${e.message}`;
    return;
  }
  const body = $('sessions').tBodies[0];
  clear(body);
  const rows = answer.sessions || [];
  $('status').textContent = rows.length
    ? `${rows.length} session${rows.length === 1 ? '' : 's'} from ${fmtInt(answer.traces)} traces${answer.truncated ? ' (stopped early: narrow the range)' : ''}`
    : 'No sessions in this range. Traces join a session through session.id, gen_ai.conversation.id or langfuse.session.id.';
  for (const s of rows) {
    const tr = el('tr', s.error_turns > 0 ? 'has-error' : null);
    const link = el('a', null, s.session_id);
    link.href = sessionHref(s.session_id);
    add(tr,
      add(el('td'), link),
      el('td', null, s.user || '–'),
      el('td', 'num', fmtInt(s.turns)),
      el('td', `num${s.error_turns ? ' err' : ''}`, fmtInt(s.error_turns)),
      el('td', null, fmtTime(s.last_end)),
      el('td', 'num', fmtDur(s.duration_nano)),
      el('td', 'num', fmtInt(tokens(s))),
      el('td', 'num', cost(s)));
    body.append(tr);
  }
}

/** One labelled figure of a summary. */
function fact(label, value, cls) {
  return add(el('span', 'item'), el('span', 'k', label), el('span', `v${cls ? ` ${cls}` : ''}`, value));
}

/** The turns along time: a bar per turn (red when it failed), the pauses between them blank. */
function drawTimeline(turns) {
  const svg = $('timeline');
  while (svg.firstChild) svg.firstChild.remove();
  const width = svg.clientWidth || 800;
  const height = 36;
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const t0 = Number(turns[0].start);
  const t1 = Math.max(...turns.map((t) => Number(t.start) + Number(t.duration_nano)));
  const span = Math.max(t1 - t0, 1);
  const x = (t) => 4 + ((t - t0) / span) * (width - 8);
  const axis = document.createElementNS(SVG, 'line');
  axis.setAttribute('x1', 4);
  axis.setAttribute('x2', width - 4);
  axis.setAttribute('y1', 26);
  axis.setAttribute('y2', 26);
  axis.setAttribute('class', 'timeline-axis');
  svg.append(axis);
  turns.forEach((t, i) => {
    const a = document.createElementNS(SVG, 'a');
    a.setAttribute('href', `#turn-${i + 1}`);
    const r = document.createElementNS(SVG, 'rect');
    const start = Number(t.start);
    r.setAttribute('x', x(start));
    r.setAttribute('y', 8);
    r.setAttribute('width', Math.max(x(start + Number(t.duration_nano)) - x(start), 3));
    r.setAttribute('height', 14);
    r.setAttribute('class', t.error_count > 0 ? 'turn-bar error' : 'turn-bar');
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `turn ${i + 1}: ${fmtDur(t.duration_nano)}${t.error_count ? `, ${t.error_types.join(', ')}` : ''}`;
    r.append(title);
    a.append(r);
    svg.append(a);
  });
}

function bubble(role, text, extraCls) {
  const b = el('div', `bubble ${role}${extraCls ? ` ${extraCls}` : ''}`);
  add(b, el('div', 'role', role === 'user' ? 'user' : 'answer'), el('div', 'bubble-text', text));
  return b;
}

async function showSession(id) {
  $('list').hidden = true;
  $('session').hidden = false;
  $('page-title').textContent = `session ${id}`;
  document.title = `chaintrace — session ${id}`;
  $('status').textContent = 'loading…';
  let answer;
  try {
    answer = await getJson(`/api/v1/sessions/${encodeURIComponent(id)}?${query({ limit: '500' })}`);
  } catch (e) {
    $('status').textContent = `could not load the session: ${e.message}`;
    return;
  }
  const turns = answer.turns || [];
  const list = $('turns');
  clear(list);
  const summary = $('session-summary');
  clear(summary);
  if (!turns.length) {
    $('status').textContent = 'No turns of this session in the range: try a longer one.';
    $('timeline').classList.add('empty');
    return;
  }
  $('timeline').classList.remove('empty');
  $('status').textContent = answer.truncated ? 'Showing the newest turns only.' : '';
  const failed = turns.filter((t) => t.error_count > 0).length;
  const total = turns.reduce((acc, t) => acc + (t.cost_usd || 0), 0);
  const first = Number(turns[0].start);
  const last = turns[turns.length - 1];
  const end = Number(last.start) + Number(last.duration_nano);
  add(summary,
    fact('user', turns.find((t) => t.user)?.user || '–'),
    fact('turns', fmtInt(turns.length)),
    fact('with errors', fmtInt(failed), failed ? 'err' : null),
    fact('from', fmtTime(first)),
    fact('lasted', fmtDur(end - first)),
    fact('tokens', fmtInt(turns.reduce((acc, t) => acc + tokens(t), 0))),
    fact('cost', fmtCost(total)));
  drawTimeline(turns);
  turns.forEach((t, i) => {
    if (t.gap_nano !== null && t.gap_nano !== undefined) {
      list.append(el('li', 'gap muted', `${fmtDur(t.gap_nano)} later`));
    }
    const li = el('li', `turn${t.error_count ? ' has-error' : ''}`);
    li.id = `turn-${i + 1}`;
    const head = el('div', 'turn-head');
    const link = el('a', null, `#${i + 1} ${t.root_name || 'trace'}`);
    link.href = `/trace/${t.trace_id}`;
    add(head, link, ' ', el('span', 'muted', `${fmtTime(t.start)} · ${fmtDur(t.duration_nano)}`));
    if (i > 0) {
      const cmp = el('a', 'compare-link', 'compare with the turn before');
      cmp.href = `/compare/${turns[i - 1].trace_id}/${t.trace_id}`;
      add(head, ' · ', cmp);
    }
    const convo = el('div', 'convo');
    add(convo,
      t.user_input ? bubble('user', t.user_input) : el('div', 'muted', 'no user message recorded'),
      t.output ? bubble('assistant', t.output) : null);
    const facts = el('div', 'turn-facts');
    add(facts,
      fact('tokens', fmtInt(tokens(t))),
      fact('cost', cost(t)),
      t.time_to_first_token_nano !== null && t.time_to_first_token_nano !== undefined
        ? fact('first token', fmtDur(t.time_to_first_token_nano)) : null,
      t.cache_hit_share !== null && t.cache_hit_share !== undefined
        ? fact('cache hits', `${Math.round(t.cache_hit_share * 100)}%`) : null,
      (t.models || []).length ? fact('model', t.models.join(', ')) : null,
      t.error_count ? fact('failed', `${t.error_count} (${t.error_types.join(', ') || 'unknown'})`, 'err') : null);
    add(li, head, convo, facts);
    list.append(li);
  });
}

function render() {
  fillForm();
  const id = sessionId();
  if (id === null) showList();
  else showSession(id);
}

$('sessions-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const p = new URLSearchParams();
  if ($('since').value !== '24h') p.set('since', $('since').value);
  if ($('user').value.trim() && sessionId() === null) p.set('user', $('user').value.trim());
  const q = p.toString();
  history.pushState(null, '', `${location.pathname}${q ? `?${q}` : ''}`);
  render();
});
window.addEventListener('popstate', render);
render();
