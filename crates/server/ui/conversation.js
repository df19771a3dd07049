// Reads the conversation of an LLM span from whichever convention its
// instrumentation used, into one shape:
//   {convention, system: [part], input: [message], output: [message]}
//   message = {role, parts: [part], finish_reason?}
//   part = {type: 'text'|'reasoning'|'tool_call'|'tool_call_response'|'blob'|'uri'|'other', ...}
// Everything stays untrusted text; this module builds no DOM.

import { attrMap, plain } from './common.js';

/** A JSON string parsed, or the value as it is. */
function parsed(v) {
  if (typeof v !== 'string') return v;
  const t = v.trim();
  if (!(t.startsWith('[') || t.startsWith('{'))) return v;
  try {
    return JSON.parse(t);
  } catch {
    return v;
  }
}

function text(t) {
  return { type: 'text', content: typeof t === 'string' ? t : JSON.stringify(t, null, 2) };
}

/** One OTel GenAI part (or an OpenAI-style content item). */
function genaiPart(p) {
  if (p === null || p === undefined) return null;
  if (typeof p === 'string') return text(p);
  switch (p.type) {
    case 'text':
      return text(p.content ?? p.text ?? '');
    case 'reasoning':
    case 'thinking':
      return { type: 'reasoning', content: String(p.content ?? p.text ?? '') };
    case 'tool_call':
      return { type: 'tool_call', id: p.id, name: p.name, arguments: p.arguments };
    case 'tool_call_response':
      return { type: 'tool_call_response', id: p.id, response: p.response ?? p.result };
    case 'blob':
      return { type: 'blob', mime_type: p.mime_type, modality: p.modality, size: String(p.content ?? '').length, content: typeof p.content === 'string' ? p.content : null };
    case 'uri':
      return { type: 'uri', uri: p.uri, mime_type: p.mime_type, modality: p.modality };
    case 'file':
      return { type: 'other', label: `file ${p.file_id ?? ''}`, value: p };
    default:
      return { type: 'other', label: String(p.type ?? 'part'), value: p };
  }
}

/** An OpenAI-style message {role, content, tool_calls} as parts. */
function openaiParts(m) {
  const parts = [];
  const c = m.content;
  if (Array.isArray(c)) for (const item of c) parts.push(genaiPart(item.type ? item : text(item)));
  else if (c !== undefined && c !== null && c !== '') parts.push(text(c));
  for (const tc of m.tool_calls || []) {
    const f = tc.function || tc;
    parts.push({ type: 'tool_call', id: tc.id, name: f.name, arguments: f.arguments });
  }
  if (m.tool_call_id && parts.length && parts[0].type === 'text') {
    return [{ type: 'tool_call_response', id: m.tool_call_id, response: parts[0].content }];
  }
  return parts.filter(Boolean);
}

/** A list of messages in either GenAI (`parts`) or OpenAI (`content`) shape. */
function messages(v) {
  v = parsed(v);
  if (v === null || v === undefined) return [];
  if (!Array.isArray(v)) {
    if (typeof v === 'object' && (v.role || v.parts || v.content)) v = [v];
    else return [{ role: 'user', parts: [text(v)] }];
  }
  return v.map((m) => {
    if (typeof m !== 'object' || m === null) return { role: 'user', parts: [text(m)] };
    const parts = Array.isArray(m.parts) ? m.parts.map(genaiPart).filter(Boolean) : openaiParts(m.message || m);
    return { role: String(m.role || (m.message && m.message.role) || 'assistant'), parts, finish_reason: m.finish_reason };
  });
}

function systemParts(v) {
  v = parsed(v);
  if (Array.isArray(v)) return v.map(genaiPart).filter(Boolean);
  return v === null || v === undefined ? [] : [text(v)];
}

/** Indexed attributes `prefix.{i}.rest` → array of Maps (rest → value). */
function indexed(attrs, prefix) {
  const out = [];
  for (const [k, v] of attrs) {
    if (!k.startsWith(prefix)) continue;
    const m = /^(\d+)\.(.+)$/.exec(k.slice(prefix.length));
    if (!m) continue;
    const i = Number(m[1]);
    if (i > 10000) continue;
    (out[i] ||= new Map()).set(m[2], v);
  }
  return out.filter(Boolean);
}

function toolCallsOf(fields, prefix, nameKey, argsKey) {
  return indexed(fields, prefix).map((t) => ({ type: 'tool_call', id: t.get('id') ?? t.get('tool_call.id'), name: t.get(nameKey), arguments: t.get(argsKey) }));
}

function traceloop(attrs) {
  const conv = (prefix) => indexed(attrs, prefix).map((f) => {
    const parts = [];
    if (f.has('content')) parts.push(text(parsed(f.get('content'))));
    parts.push(...toolCallsOf(f, 'tool_calls.', 'name', 'arguments'));
    return { role: String(f.get('role') ?? 'assistant'), parts, finish_reason: f.get('finish_reason') };
  });
  return { input: conv('gen_ai.prompt.'), output: conv('gen_ai.completion.') };
}

function openinference(attrs) {
  const conv = (prefix) => indexed(attrs, prefix).map((f) => {
    const parts = [];
    const role = f.get('message.role') ?? 'assistant';
    if (f.has('message.content')) parts.push(text(f.get('message.content')));
    for (const c of indexed(f, 'message.contents.')) {
      if (c.has('message_content.text')) parts.push(text(c.get('message_content.text')));
      else if (c.has('message_content.image.image.url')) parts.push({ type: 'uri', uri: c.get('message_content.image.image.url') });
    }
    parts.push(...toolCallsOf(f, 'message.tool_calls.', 'tool_call.function.name', 'tool_call.function.arguments'));
    if (f.has('message.tool_call_id') && parts.length && parts[0].type === 'text') {
      return { role, parts: [{ type: 'tool_call_response', id: f.get('message.tool_call_id'), response: parts[0].content }] };
    }
    return { role: String(role), parts };
  });
  return { input: conv('llm.input_messages.'), output: conv('llm.output_messages.') };
}

const EVENT_ROLES = {
  'gen_ai.system.message': 'system',
  'gen_ai.user.message': 'user',
  'gen_ai.assistant.message': 'assistant',
  'gen_ai.tool.message': 'tool',
};

/**
 * The conversation of `span` (native API JSON), or null when it records
 * none. Conventions are tried from the newest to the oldest.
 */
export function conversation(span) {
  const attrs = attrMap(span.attributes);
  const events = span.events || [];

  // OTel GenAI, current: attributes, or the same on the details event.
  const details = events.find((e) => e.name === 'gen_ai.client.inference.operation.details');
  for (const [src, where] of [[attrs, 'attributes'], [details ? attrMap(details.attributes) : null, 'event gen_ai.client.inference.operation.details']]) {
    if (!src) continue;
    if (src.has('gen_ai.input.messages') || src.has('gen_ai.output.messages') || src.has('gen_ai.system_instructions')) {
      return {
        convention: `OpenTelemetry GenAI (gen_ai.input.messages / gen_ai.output.messages, ${where})`,
        system: systemParts(src.get('gen_ai.system_instructions')),
        input: messages(src.get('gen_ai.input.messages')),
        output: messages(src.get('gen_ai.output.messages')),
      };
    }
  }

  // OTel GenAI, older: one event per message.
  const perMessage = events.filter((e) => EVENT_ROLES[e.name] || e.name === 'gen_ai.choice');
  if (perMessage.length) {
    const input = [], output = [];
    for (const e of perMessage) {
      const a = attrMap(e.attributes);
      if (e.name === 'gen_ai.choice') {
        const m = parsed(a.get('message')) || {};
        const parts = typeof m === 'object' ? openaiParts(m) : [text(m)];
        if (!parts.length && a.has('content')) parts.push(text(parsed(a.get('content'))));
        output.push({ role: (m && m.role) || 'assistant', parts, finish_reason: a.get('finish_reason') });
      } else {
        const m = { role: a.get('role') || EVENT_ROLES[e.name], content: parsed(a.get('content')), tool_calls: parsed(a.get('tool_calls')), tool_call_id: a.get('id') };
        input.push({ role: String(m.role), parts: openaiParts(m) });
      }
    }
    const system = input.filter((m) => m.role === 'system').flatMap((m) => m.parts);
    return { convention: 'OpenTelemetry GenAI events (gen_ai.*.message, gen_ai.choice)', system, input: input.filter((m) => m.role !== 'system'), output };
  }

  // Older still: gen_ai.content.prompt / gen_ai.content.completion events.
  const promptEv = events.find((e) => e.name === 'gen_ai.content.prompt');
  const complEv = events.find((e) => e.name === 'gen_ai.content.completion');
  if (promptEv || complEv) {
    return {
      convention: 'OpenTelemetry GenAI events (gen_ai.content.prompt / gen_ai.content.completion)',
      system: [],
      input: promptEv ? messages(attrMap(promptEv.attributes).get('gen_ai.prompt')) : [],
      output: complEv ? messages(attrMap(complEv.attributes).get('gen_ai.completion')) : [],
    };
  }

  const [keys] = [[...attrs.keys()]];
  if (keys.some((k) => /^gen_ai\.(prompt|completion)\.\d+\./.test(k))) {
    const t = traceloop(attrs);
    const system = t.input.filter((m) => m.role === 'system').flatMap((m) => m.parts);
    return { convention: 'Traceloop / OpenLLMetry (gen_ai.prompt.{i}.* / gen_ai.completion.{i}.*)', system, input: t.input.filter((m) => m.role !== 'system'), output: t.output };
  }
  if (keys.some((k) => /^llm\.(input|output)_messages\.\d+\./.test(k))) {
    const o = openinference(attrs);
    const system = o.input.filter((m) => m.role === 'system').flatMap((m) => m.parts);
    return { convention: 'OpenInference (llm.input_messages.{i}.message.*)', system, input: o.input.filter((m) => m.role !== 'system'), output: o.output };
  }
  if (attrs.has('gen_ai.prompt') || attrs.has('gen_ai.completion')) {
    return { convention: 'gen_ai.prompt / gen_ai.completion attributes', system: [], input: messages(attrs.get('gen_ai.prompt')), output: messages(attrs.get('gen_ai.completion')) };
  }
  if (attrs.has('input.value') || attrs.has('output.value')) {
    const one = (v, role) => (v === undefined ? [] : [{ role, parts: [text(parsed(v))] }]);
    return { convention: 'OpenInference (input.value / output.value)', system: [], input: one(attrs.get('input.value'), 'user'), output: one(attrs.get('output.value'), 'assistant') };
  }
  if (attrs.has('traceloop.entity.input') || attrs.has('traceloop.entity.output')) {
    const one = (v, role) => (v === undefined ? [] : [{ role, parts: [text(parsed(v))] }]);
    return { convention: 'Traceloop (traceloop.entity.input / output)', system: [], input: one(attrs.get('traceloop.entity.input'), 'user'), output: one(attrs.get('traceloop.entity.output'), 'assistant') };
  }
  return null;
}

export { plain };
