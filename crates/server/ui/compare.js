// The compare page, `/compare/{a}/{b}`: two traces matched span by span
// (path of names from the root, order among same-named siblings) from
// `GET /api/v1/compare/{a}/{b}`: both durations and the difference (B − A)
// per span, self times, tokens and cost, which spans are on each critical
// path, the spans only one side has, and where the critical paths part.

import { add, clear, el, fmtCost, fmtDur, fmtInt, getJson } from './common.js';

const $ = (id) => document.getElementById(id);

/** The two ids in the path, or null. */
function ids() {
  const m = location.pathname.match(/^\/compare\/([0-9a-fA-F]{1,32})\/([0-9a-fA-F]{1,32})$/);
  return m ? [m[1].toLowerCase(), m[2].toLowerCase()] : null;
}

/** A signed duration: "+12 ms", "−50 ms", "0"; faster is "better". */
function delta(ns) {
  if (!ns) return el('span', 'delta same', '0');
  const text = `${ns > 0 ? '+' : '−'}${fmtDur(Math.abs(ns))}`;
  return el('span', `delta ${ns > 0 ? 'slower' : 'faster'}`, text);
}

function item(label, value) {
  const v = typeof value === 'string' ? el('span', 'v', value) : add(el('span', 'v'), value);
  return add(el('span', 'item'), el('span', 'k', label), v);
}

function traceLink(id, label) {
  const a = el('a', null, label);
  a.href = `/trace/${id}`;
  return a;
}

function maybe(n, fmt) {
  return n === null || n === undefined ? '–' : fmt(n);
}

function pathList(title, names, partAt) {
  const row = el('div', 'path-row');
  add(row, el('span', 'k', title));
  names.forEach((name, i) => {
    if (i > 0) add(row, el('span', 'muted', ' → '));
    const step = el('span', partAt !== null && i >= partAt ? 'path-step parted' : 'path-step', name.split(' > ').pop());
    step.title = name;
    add(row, step);
  });
  return row;
}

async function main() {
  const pair = ids();
  if (!pair) {
    $('status').textContent = 'The address should be /compare/<trace id A>/<trace id B>.';
    return;
  }
  const [a, b] = pair;
  document.title = `chaintrace — compare ${a.slice(0, 8)} and ${b.slice(0, 8)}`;
  $('status').textContent = 'loading…';
  let c;
  try {
    c = await getJson(`/api/v1/compare/${a}/${b}`);
  } catch (e) {
    $('status').textContent = `could not compare: ${e.message}`;
    return;
  }
  $('status').textContent = '';
  add($('compare-summary'),
    item('A', traceLink(a, a.slice(0, 16))),
    item('B', traceLink(b, b.slice(0, 16))),
    item('A took', fmtDur(c.a_duration_nano)),
    item('B took', fmtDur(c.b_duration_nano)),
    item('B − A', delta(c.duration_delta_nano)),
    item('matched spans', fmtInt(c.matched.length)),
    item('only in A / B', `${c.only_a.length} / ${c.only_b.length}`));
  const part = c.critical_paths_part_at ?? null;
  add($('paths'),
    pathList('critical path A', c.a_critical_path, part),
    pathList('critical path B', c.b_critical_path, part),
    el('div', 'muted', part === null ? 'The critical paths are the same.' : `The critical paths part at step ${part + 1} (marked).`));
  const body = $('matched').tBodies[0];
  clear(body);
  // In the order the spans ran (A's), so the tree reads top-down.
  for (const m of [...c.matched].sort((x, y) => x.a_index - y.a_index)) {
    const depth = m.path.split(' > ').length - 1;
    const name = el('td', 'path-cell');
    name.title = m.path;
    const label = el('span', 'path-name', m.path.split(' > ').pop());
    label.style.paddingLeft = `${depth * 14}px`;
    add(name, label);
    const tr = el('tr', m.a_critical || m.b_critical ? 'critical' : null);
    tr.dataset.path = m.path;
    add(tr,
      name,
      el('td', 'num', fmtDur(m.a_duration_nano)),
      el('td', 'num', fmtDur(m.b_duration_nano)),
      add(el('td', 'num'), delta(m.duration_delta_nano)),
      add(el('td', 'num'), delta(m.self_delta_nano)),
      el('td', 'num', m.a_tokens === null && m.b_tokens === null ? '' : `${maybe(m.a_tokens, fmtInt)} → ${maybe(m.b_tokens, fmtInt)}`),
      el('td', 'num', m.a_cost_usd === null && m.b_cost_usd === null ? '' : `${maybe(m.a_cost_usd, fmtCost)} → ${maybe(m.b_cost_usd, fmtCost)}`),
      el('td', 'crit-marks', `${m.a_critical ? '◆' : '·'}${m.b_critical ? '◆' : '·'}`));
    body.append(tr);
  }
  $('matched').hidden = false;
  const lone = $('lone');
  clear(lone);
  for (const [side, spans] of [['A', c.only_a], ['B', c.only_b]]) {
    if (!spans.length) continue;
    const list = el('ul', 'lone-list');
    for (const s of spans) list.append(el('li', null, `${s.path} (${fmtDur(s.duration_nano)})`));
    add(lone, el('h3', null, `Only in ${side}`), list);
  }
}

main();
