// The Gantt chart of one trace, drawn from /api/v1/traces/{id}/gantt.
//
// Only the rows in view are in the DOM: a pool of row elements is moved and
// refilled as the list scrolls, so 100 000 spans cost what 40 do. The tree
// (collapse, sibling groups, filters) is a list of visible items recomputed
// in one linear pass when it changes. Layout, critical path, self times and
// groups come from the server's analysis crate; nothing here re-derives them.

import { el, fmtDur, fmtInt, llmCall } from './common.js';

const ROW_H = 24;
const OVERSCAN = 6;

/** Item ids in the visible list: a row is its index, group g is -(g + 1). */
const groupItem = (g) => -(g + 1);
const itemGroup = (item) => -item - 1;

export class Gantt {
  constructor(doc, parts, callbacks) {
    this.doc = doc;
    this.parts = parts; // {scroll, space, axis, minimap, count}
    this.cb = callbacks; // {onOpen(item), onChange()}
    const rows = doc.rows;
    const n = rows.span.length;
    this.n = n;
    this.total = Math.max(1, doc.total_nano);
    this.view = [0, this.total];
    this.collapsed = new Set();
    this.openGroups = new Set();
    this.critOnly = false;
    this.filter = null; // {match: Uint8Array, keep: Uint8Array, mode, count}
    this.selected = n > 0 ? 0 : null; // an item id

    // Derived columns, once: subtree ends, error types, LLM facts, groups.
    this.end = new Int32Array(n);
    const stack = [];
    for (let i = 0; i < n; i++) {
      const d = rows.depth[i];
      while (stack.length && rows.depth[stack[stack.length - 1]] >= d) this.end[stack.pop()] = i;
      stack.push(i);
    }
    for (const i of stack) this.end[i] = n;
    this.errType = new Map();
    for (const e of doc.errors) this.errType.set(e.row, doc.strings[e.type]);
    this.isLlm = new Uint8Array(n);
    for (const r of doc.llm.row) this.isLlm[r] = 1;
    this.groupAt = new Map();
    this.groupOf = new Int32Array(n).fill(-1);
    doc.groups.forEach((g, gi) => {
      this.groupAt.set(g.rows[0], gi);
      for (const r of g.rows) this.groupOf[r] = gi;
      const last = g.rows[g.rows.length - 1];
      let start = Infinity, end = 0, crit = false;
      for (const r of g.rows) {
        start = Math.min(start, rows.offset[r]);
        end = Math.max(end, rows.offset[r] + rows.dur[r]);
        crit = crit || rows.crit[r] === 1;
      }
      g.start = start;
      g.endAt = end;
      g.crit = crit;
      g.last = last;
      g.name = doc.strings[rows.name[g.rows[0]]];
      g.allFailed = g.failed === g.rows.length || (g.kind === 'retry' && rows.err[last] === 1);
    });

    this.visible = new Int32Array(0);
    this.pool = [];
    this.frame = 0;
    this.bind();
    this.recompute();
  }

  // ---- the list of visible items ----

  recompute() {
    const { n } = this;
    const rows = this.doc.rows;
    const out = new Int32Array(n);
    let k = 0;
    if (this.critOnly) {
      for (let i = 0; i < n; i++) if (rows.crit[i] === 1 && (!this.filter || this.filter.mode !== 'hide' || this.filter.keep[i])) out[k++] = i;
    } else if (this.filter && this.filter.mode === 'hide') {
      for (let i = 0; i < n; i++) if (this.filter.keep[i]) out[k++] = i;
    } else {
      let i = 0;
      while (i < n) {
        const g = this.groupAt.get(i);
        if (g !== undefined && !this.openGroups.has(g)) {
          out[k++] = groupItem(g);
          i = this.end[this.doc.groups[g].last];
          continue;
        }
        out[k++] = i;
        i = this.collapsed.has(i) ? this.end[i] : i + 1;
      }
    }
    this.visible = out.subarray(0, k);
    this.parts.space.style.height = `${k * ROW_H}px`;
    this.parts.count.textContent = `${fmtInt(k)} of ${fmtInt(n)} rows`;
    if (this.selected !== null && this.indexOf(this.selected) < 0) {
      // The selection went out of view: keep the nearest visible ancestor.
      this.selected = this.nearestVisible(this.selected);
    }
    this.render();
  }

  indexOf(item) {
    const v = this.visible;
    for (let i = 0; i < v.length; i++) if (v[i] === item) return i;
    return -1;
  }

  nearestVisible(item) {
    let r = item >= 0 ? item : this.doc.groups[itemGroup(item)].rows[0];
    while (r >= 0) {
      if (this.indexOf(r) >= 0) return r;
      const g = this.groupOf[r];
      if (g >= 0 && this.indexOf(groupItem(g)) >= 0) return groupItem(g);
      r = this.doc.rows.parent[r];
    }
    return this.visible.length ? this.visible[0] : null;
  }

  // ---- state changes ----

  hasKids(r) {
    return this.end[r] > r + 1;
  }

  /** Every row shown: subtrees expanded and sibling groups unfolded. */
  expandAll() {
    this.collapsed.clear();
    this.doc.groups.forEach((_, g) => this.openGroups.add(g));
    this.recompute();
  }

  /** Roots only, and groups folded again. */
  collapseAll() {
    this.openGroups.clear();
    this.collapseToDepth(1);
  }

  /** Shows rows down to `depth` levels (1: roots only). */
  collapseToDepth(depth) {
    this.collapsed.clear();
    const rows = this.doc.rows;
    for (let i = 0; i < this.n; i++) if (rows.depth[i] === depth - 1 && this.hasKids(i)) this.collapsed.add(i);
    // Deeper rows stay expanded inside, so expanding one level shows one level.
    this.recompute();
  }

  /** Rows on a what-if's critical path, outlined; null clears them. */
  setWhatIf(rowSet) {
    this.whatIf = rowSet;
    this.render();
  }

  setCritOnly(on) {
    this.critOnly = on;
    this.recompute();
  }

  /** `match(row)` says which rows the find box matches; null clears it. */
  setFilter(match, mode) {
    if (!match) {
      this.filter = null;
      this.recompute();
      return 0;
    }
    const rows = this.doc.rows;
    const m = new Uint8Array(this.n);
    const keep = new Uint8Array(this.n);
    let count = 0;
    for (let i = 0; i < this.n; i++) {
      if (!match(i)) continue;
      m[i] = 1;
      count++;
      for (let p = i; p >= 0 && !keep[p]; p = rows.parent[p]) keep[p] = 1;
    }
    this.filter = { match: m, keep, mode, count };
    this.recompute();
    return count;
  }

  toggle(item) {
    if (item < 0) {
      const g = itemGroup(item);
      if (this.openGroups.has(g)) this.openGroups.delete(g);
      else this.openGroups.add(g);
    } else if (this.hasKids(item)) {
      if (this.collapsed.has(item)) this.collapsed.delete(item);
      else this.collapsed.add(item);
    }
    this.recompute();
  }

  isOpen(item) {
    if (item < 0) return this.openGroups.has(itemGroup(item));
    return this.hasKids(item) && !this.collapsed.has(item);
  }

  /** Expands whatever hides row `r`, selects it and scrolls to it. */
  reveal(r) {
    if (r < 0 || r >= this.n) return;
    for (let p = r; p >= 0; p = this.doc.rows.parent[p]) {
      if (p !== r) this.collapsed.delete(p);
      const g = this.groupOf[p];
      if (g >= 0) this.openGroups.add(g);
    }
    this.recompute();
    this.select(this.indexOf(r) >= 0 ? r : this.nearestVisible(r));
  }

  select(item, open = false) {
    if (item !== null && this.indexOf(item) < 0) item = this.nearestVisible(item);
    this.selected = item;
    const i = this.indexOf(item);
    if (i >= 0) this.scrollTo(i);
    this.render();
    if (open && item !== null) this.cb.onOpen(item);
  }

  scrollTo(index) {
    const s = this.parts.scroll;
    const top = index * ROW_H;
    if (top < s.scrollTop) s.scrollTop = top;
    else if (top + ROW_H > s.scrollTop + s.clientHeight) s.scrollTop = top + ROW_H - s.clientHeight;
  }

  setView(a, b) {
    const min = Math.max(1000, this.total / 1e6);
    a = Math.max(0, Math.min(a, this.total));
    b = Math.max(0, Math.min(b, this.total));
    if (b - a < min) {
      const mid = (a + b) / 2;
      a = Math.max(0, mid - min / 2);
      b = Math.min(this.total, a + min);
    }
    this.view = [a, b];
    this.render();
    this.drawWindow();
    this.cb.onChange();
  }

  resetView() {
    this.setView(0, this.total);
  }

  // ---- drawing ----

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  makeRow() {
    const row = el('div', 'row');
    row.setAttribute('role', 'treeitem');
    const label = el('div', 'label');
    const toggle = el('span', 'toggle');
    const mark = el('span', 'crit-mark');
    const name = el('span', 'name');
    const svc = el('span', 'svc');
    label.append(toggle, mark, name, svc);
    const track = el('div', 'track');
    const bar = el('div', 'bar');
    const self = el('div', 'selfbar');
    bar.append(self);
    const text = el('span', 'bar-text');
    track.append(bar, text);
    row.append(label, track);
    row.parts = { toggle, mark, name, svc, bar, self, text };
    this.parts.space.append(row);
    return row;
  }

  render() {
    const s = this.parts.scroll;
    const v = this.visible;
    const first = Math.max(0, Math.floor(s.scrollTop / ROW_H) - OVERSCAN);
    const last = Math.min(v.length, Math.ceil((s.scrollTop + s.clientHeight) / ROW_H) + OVERSCAN);
    const want = last - first;
    while (this.pool.length < want) this.pool.push(this.makeRow());
    for (let k = 0; k < this.pool.length; k++) {
      const row = this.pool[k];
      if (k >= want) {
        if (!row.hidden) {
          row.hidden = true;
          row.className = 'row';
          delete row.dataset.name;
        }
        continue;
      }
      row.hidden = false;
      this.fill(row, first + k, v[first + k]);
    }
    this.drawAxis();
  }

  fill(row, index, item) {
    const rows = this.doc.rows;
    const strings = this.doc.strings;
    const p = row.parts;
    const [v0, v1] = this.view;
    const span = v1 - v0;
    row.style.transform = `translateY(${index * ROW_H}px)`;
    row.dataset.item = String(item);
    row.dataset.index = String(index);
    let depth, name, svc, start, dur, self, crit, err, text, kind;
    if (item < 0) {
      const g = this.doc.groups[itemGroup(item)];
      const r0 = g.rows[0];
      depth = rows.depth[r0];
      name = g.name;
      svc = strings[rows.svc[r0]];
      start = g.start;
      dur = g.endAt - g.start;
      self = 0;
      crit = g.crit;
      err = g.allFailed;
      kind = 'group';
      let label = `${g.name} ×${g.rows.length}`;
      if (g.kind === 'retry') label += ` — ${g.failed} failed, ${fmtDur(g.lost_nano)} lost`;
      else if (g.failed) label += ` — ${g.failed} failed`;
      p.name.textContent = label;
      text = fmtDur(dur);
      row.dataset.name = g.name;
      row.dataset.group = g.kind;
      p.toggle.textContent = this.openGroups.has(itemGroup(item)) ? '▾' : '▸';
    } else {
      const r = item;
      depth = rows.depth[r];
      name = strings[rows.name[r]];
      svc = strings[rows.svc[r]];
      start = rows.offset[r];
      dur = rows.dur[r];
      self = rows.self[r];
      crit = rows.crit[r] === 1;
      err = rows.err[r] === 1;
      kind = this.isLlm[r] === 1 ? 'llm' : 'span';
      p.name.textContent = name;
      row.dataset.name = name;
      delete row.dataset.group;
      p.toggle.textContent = this.hasKids(r) ? (this.collapsed.has(r) && !this.filter && !this.critOnly ? '▸' : '▾') : '';
      const bits = [];
      if (err) bits.push(this.errType.get(r) || 'error');
      const l = this.isLlm[r] === 1 ? llmCall(this.doc, r) : null;
      if (l) {
        if (l.model >= 0) bits.push(strings[l.model]);
        if (l.input !== null || l.output !== null) bits.push(`${fmtInt(l.input ?? 0)}→${fmtInt(l.output ?? 0)} tok`);
      }
      bits.push(fmtDur(dur));
      if (self > 0 && self < dur && this.hasKids(r)) bits.push(`self ${fmtDur(self)}`);
      text = bits.join(' · ');
    }
    p.svc.textContent = svc;
    p.mark.textContent = crit ? '◆' : '';
    p.mark.title = crit ? 'on the critical path' : '';
    row.firstChild.style.paddingLeft = `${4 + depth * 14}px`;
    row.setAttribute('aria-level', String(depth + 1));
    row.setAttribute('aria-selected', String(item === this.selected));
    const open = item < 0 ? this.openGroups.has(itemGroup(item)) : this.hasKids(item) ? !this.collapsed.has(item) : null;
    if (open === null) row.removeAttribute('aria-expanded');
    else row.setAttribute('aria-expanded', String(open));
    let cls = 'row';
    if (kind === 'group') cls += ' group';
    if (kind === 'llm') cls += ' llm';
    if (crit) cls += ' crit';
    if (err) cls += ' err';
    if (this.whatIf && (item >= 0 ? this.whatIf.has(item) : this.doc.groups[itemGroup(item)].rows.some((r) => this.whatIf.has(r)))) cls += ' whatif-path';
    if (item === this.selected) cls += ' selected';
    if (this.filter && item >= 0) {
      if (this.filter.match[item]) cls += ' match';
      else if (this.filter.mode === 'dim') cls += ' dim';
    }
    row.className = cls;
    // Bar and its text, as percentages of the track.
    const left = ((start - v0) / span) * 100;
    const width = (dur / span) * 100;
    p.bar.style.left = `${left}%`;
    p.bar.style.width = `${width}%`;
    p.self.style.width = dur > 0 ? `${(self / dur) * 100}%` : '0';
    p.text.textContent = text;
    const end = left + width;
    if (end < 70) {
      p.text.style.left = `calc(${Math.max(end, 0)}% + 4px)`;
      p.text.style.right = '';
    } else {
      p.text.style.left = '';
      p.text.style.right = `calc(${Math.max(100 - Math.max(left, 0), 0)}% + 4px)`;
      if (left < 30) {
        // No room on either side: write inside the bar.
        p.text.style.right = '';
        p.text.style.left = `calc(${Math.max(left, 0)}% + 4px)`;
      }
    }
  }

  drawAxis() {
    const axis = this.parts.axis;
    const [v0, v1] = this.view;
    const key = `${v0}:${v1}:${axis.clientWidth}`;
    if (this.axisKey === key) return;
    this.axisKey = key;
    for (const t of [...axis.querySelectorAll('.tick')]) t.remove();
    const span = v1 - v0;
    // About one label per 80 px, so labels such as "41 min 40 s" never
    // overlap, however narrow the window.
    const raw = span / Math.max(2, Math.floor(axis.clientWidth / 80));
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) || raw;
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const tick = el('div', 'tick', fmtDur(Math.round(t)));
      tick.style.left = `${((t - v0) / span) * 100}%`;
      axis.append(tick);
    }
  }

  /**
   * Draws the minimap once the first rows are on screen: on a 100 000-span
   * trace its three passes over every row would delay them.
   */
  drawMinimapSoon() {
    requestAnimationFrame(() => setTimeout(() => this.drawMinimap(), 0));
  }

  /** The minimap: every row once, drawn to an offscreen canvas. */
  drawMinimap() {
    const c = this.parts.minimap;
    this.minimapSize = `${c.clientWidth}x${c.clientHeight}`;
    const w = Math.max(1, c.clientWidth);
    const h = c.clientHeight || 44;
    const dpr = window.devicePixelRatio || 1;
    const img = document.createElement('canvas');
    img.width = Math.round(w * dpr);
    img.height = Math.round(h * dpr);
    const ctx = img.getContext('2d');
    const css = getComputedStyle(document.documentElement);
    const colors = [css.getPropertyValue('--bar'), css.getPropertyValue('--crit'), css.getPropertyValue('--err')];
    const rows = this.doc.rows;
    const W = img.width, H = img.height, n = this.n;
    for (let pass = 0; pass < 3; pass++) {
      ctx.fillStyle = colors[pass].trim() || '#888';
      for (let i = 0; i < n; i++) {
        const kind = rows.err[i] === 1 ? 2 : rows.crit[i] === 1 ? 1 : 0;
        if (kind !== pass) continue;
        const x = (rows.offset[i] / this.total) * W;
        const y = Math.floor((i / n) * (H - 2));
        ctx.fillRect(x, y, Math.max(1, (rows.dur[i] / this.total) * W), Math.max(1, Math.ceil(H / Math.max(n, 1))));
      }
    }
    this.minimapImage = img;
    c.width = img.width;
    c.height = img.height;
    this.drawWindow();
  }

  drawWindow() {
    const c = this.parts.minimap;
    if (!this.minimapImage) return;
    const ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    ctx.drawImage(this.minimapImage, 0, 0);
    const [v0, v1] = this.view;
    const a = (v0 / this.total) * c.width, b = (v1 / this.total) * c.width;
    ctx.fillStyle = 'rgba(127,127,127,0.35)';
    ctx.fillRect(0, 0, a, c.height);
    ctx.fillRect(b, 0, c.width - b, c.height);
  }

  // ---- input ----

  bind() {
    const { scroll, axis, minimap } = this.parts;
    scroll.addEventListener('scroll', () => this.schedule(), { passive: true });
    new ResizeObserver(() => {
      this.axisKey = null;
      this.render();
      // The first call comes as the page first lays out: the minimap is
      // drawn after that paint (see drawMinimapSoon), and again only when
      // its size changed.
      const m = this.parts.minimap;
      if (this.minimapImage && this.minimapSize !== `${m.clientWidth}x${m.clientHeight}`) this.drawMinimap();
    }).observe(scroll);
    scroll.addEventListener('click', (e) => {
      const row = e.target.closest('.row');
      if (!row) return;
      const item = Number(row.dataset.item);
      if (e.target.classList.contains('toggle')) {
        this.toggle(item);
        this.select(item);
        return;
      }
      scroll.focus({ preventScroll: true });
      this.select(item, true);
    });
    scroll.addEventListener('dblclick', (e) => {
      const row = e.target.closest('.row');
      if (row) this.toggle(Number(row.dataset.item));
    });
    scroll.addEventListener('keydown', (e) => this.key(e));
    // Ctrl/⌘ + wheel zooms around the pointer, shift + wheel pans.
    scroll.addEventListener('wheel', (e) => {
      const track = scroll.querySelector('.track');
      if (!track) return;
      const rect = track.getBoundingClientRect();
      if (e.ctrlKey || e.metaKey) {
        e.preventDefault();
        this.zoomAround((e.clientX - rect.left) / rect.width, e.deltaY);
      } else if (e.shiftKey || Math.abs(e.deltaX) > Math.abs(e.deltaY)) {
        e.preventDefault();
        this.pan(((e.shiftKey ? e.deltaY : e.deltaX) / rect.width) * (this.view[1] - this.view[0]));
      }
    }, { passive: false });
    axis.addEventListener('wheel', (e) => {
      e.preventDefault();
      const rect = axis.getBoundingClientRect();
      this.zoomAround((e.clientX - rect.left) / rect.width, e.deltaY);
    }, { passive: false });
    this.dragRange(axis, (a, b) => {
      const [v0, v1] = this.view;
      this.setView(v0 + a * (v1 - v0), v0 + b * (v1 - v0));
    });
    this.dragRange(minimap, (a, b) => this.setView(a * this.total, b * this.total), (x) => {
      // A click on the minimap centres the current window there.
      const w = this.view[1] - this.view[0];
      this.setView(x * this.total - w / 2, x * this.total + w / 2);
    });
  }

  zoomAround(fraction, delta) {
    const [v0, v1] = this.view;
    const at = v0 + fraction * (v1 - v0);
    const f = Math.exp(delta * 0.002);
    this.setView(at - (at - v0) * f, at + (v1 - at) * f);
  }

  pan(by) {
    const [v0, v1] = this.view;
    const w = v1 - v0;
    const a = Math.max(0, Math.min(this.total - w, v0 + by));
    this.setView(a, a + w);
  }

  /** Drag across `node` to choose a range (fractions 0..1 of its width). */
  dragRange(node, done, click) {
    node.addEventListener('mousedown', (e) => {
      e.preventDefault();
      const rect = node.getBoundingClientRect();
      const x0 = e.clientX;
      const sel = node === this.parts.axis ? el('div', 'zoom-sel') : null;
      if (sel) node.append(sel);
      const move = (m) => {
        if (!sel) return;
        const a = Math.min(x0, m.clientX) - rect.left, b = Math.max(x0, m.clientX) - rect.left;
        sel.style.left = `${a}px`;
        sel.style.width = `${b - a}px`;
      };
      const up = (u) => {
        window.removeEventListener('mousemove', move);
        window.removeEventListener('mouseup', up);
        if (sel) sel.remove();
        const a = (Math.min(x0, u.clientX) - rect.left) / rect.width;
        const b = (Math.max(x0, u.clientX) - rect.left) / rect.width;
        if (Math.abs(u.clientX - x0) > 3) done(Math.max(0, a), Math.min(1, b));
        else if (click) click((u.clientX - rect.left) / rect.width);
      };
      window.addEventListener('mousemove', move);
      window.addEventListener('mouseup', up);
    });
  }

  key(e) {
    const v = this.visible;
    if (!v.length) return;
    let i = this.selected === null ? -1 : this.indexOf(this.selected);
    const item = i >= 0 ? v[i] : null;
    const page = Math.max(1, Math.floor(this.parts.scroll.clientHeight / ROW_H) - 1);
    switch (e.key) {
      case 'ArrowDown': i = Math.min(v.length - 1, i + 1); break;
      case 'ArrowUp': i = Math.max(0, i - 1); break;
      case 'PageDown': i = Math.min(v.length - 1, i + page); break;
      case 'PageUp': i = Math.max(0, i - page); break;
      case 'Home': i = 0; break;
      case 'End': i = v.length - 1; break;
      case 'ArrowRight':
        if (item === null) return;
        if ((item < 0 || this.hasKids(item)) && !this.isOpen(item) && !this.filter && !this.critOnly) {
          this.toggle(item);
          e.preventDefault();
          return;
        }
        i = Math.min(v.length - 1, i + 1);
        break;
      case 'ArrowLeft': {
        if (item === null) return;
        if (this.isOpen(item) && !this.filter && !this.critOnly) {
          this.toggle(item);
          e.preventDefault();
          return;
        }
        const r = item < 0 ? this.doc.groups[itemGroup(item)].rows[0] : item;
        const parent = this.doc.rows.parent[r];
        if (parent >= 0) {
          const pi = this.indexOf(parent);
          if (pi >= 0) i = pi;
        }
        break;
      }
      case 'Enter':
      case ' ':
        if (item !== null) this.cb.onOpen(item);
        e.preventDefault();
        return;
      default:
        return;
    }
    e.preventDefault();
    this.select(v[Math.max(0, i)]);
  }
}

/** The span rows an item stands for: a row itself, or a group's members. */
export function rowsOf(doc, item) {
  return item >= 0 ? [item] : doc.groups[itemGroup(item)].rows;
}
