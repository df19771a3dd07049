// A small Markdown reader for LLM messages, as models write them:
// headings, paragraphs, emphasis, inline code, fenced code blocks, lists,
// block quotes and links. The text is untrusted: every piece becomes DOM
// nodes through `el` and text nodes, never HTML, and only http(s) targets
// become links (through `safeHref`). What it does not know stays text.

import { add, el, safeHref } from './common.js';

/** Inline spans of one line or paragraph: `code`, **strong**, *em*, _em_, [text](url). */
function inline(text) {
  const out = document.createDocumentFragment();
  // Code first (its content is literal), then links, strong, emphasis.
  const pattern = /`([^`\n]+)`|\[([^\]\n]+)\]\(([^)\s]+)\)|\*\*([^*\n]+)\*\*|(?<!\w)__([^_\n]+)__(?!\w)|\*([^*\n]+)\*|(?<!\w)_([^_\n]+)_(?!\w)/g;
  let at = 0;
  for (const m of text.matchAll(pattern)) {
    if (m.index > at) out.append(document.createTextNode(text.slice(at, m.index)));
    if (m[1] !== undefined) out.append(el('code', null, m[1]));
    else if (m[2] !== undefined) {
      const href = safeHref(m[3]);
      if (href) {
        const a = el('a', null, m[2]);
        a.href = href;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        out.append(a);
      } else {
        out.append(document.createTextNode(m[0]));
      }
    } else if (m[4] !== undefined || m[5] !== undefined) out.append(add(el('strong'), inline(m[4] ?? m[5])));
    else out.append(add(el('em'), inline(m[6] ?? m[7])));
    at = m.index + m[0].length;
  }
  if (at < text.length) out.append(document.createTextNode(text.slice(at)));
  return out;
}

/** `text` as Markdown, in a `div.md`. */
export function markdown(text) {
  const root = el('div', 'md');
  const lines = String(text).split('\n');
  let i = 0;
  let para = [];
  const flush = () => {
    if (para.length) root.append(add(el('p'), inline(para.join(' '))));
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```|~~~)\s*([\w+-]*)\s*$/);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const pre = el('pre', 'text');
      const code = el('code', null, body.join('\n'));
      if (fence[2]) code.dataset.lang = fence[2];
      pre.append(code);
      root.append(pre);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      flush();
      root.append(add(el(`h${Math.min(6, heading[1].length + 2)}`), inline(heading[2])));
      i++;
      continue;
    }
    const item = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const list = el(ordered ? 'ol' : 'ul');
      while (i < lines.length) {
        const m = lines[i].match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        list.append(add(el('li'), inline(m[2])));
        i++;
      }
      root.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) quoted.push(lines[i++].replace(/^\s*>\s?/, ''));
      root.append(add(el('blockquote'), markdown(quoted.join('\n'))));
      continue;
    }
    if (!line.trim()) flush();
    else para.push(line.trim());
    i++;
  }
  flush();
  return root;
}
