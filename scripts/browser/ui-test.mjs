// Drives the web UI in Debian's Chromium against a running chaintrace whose
// fixtures crates/cli/tests/it/browser.rs sent; exits non-zero when any
// check failed. Waits on selectors and conditions, never on sleeps.
//
// Environment: CHAINTRACE_URL, CHAINTRACE_NODE_MODULES (where playwright-core
// is), CHAINTRACE_SHOTS (screenshot dir), TRACE_RAG, TRACE_CONVENTIONS,
// TRACE_HOSTILE.

import path from 'node:path';
import { checker, env, open } from './harness.mjs';

const base = env('CHAINTRACE_URL');
const shots = env('CHAINTRACE_SHOTS');
const RAG = env('TRACE_RAG');
const CONV = env('TRACE_CONVENTIONS');
const HOSTILE = env('TRACE_HOSTILE');
const TIMEOUT = 20000;
// The query check answers a bad query with 400 on purpose, and so does a
// span filter being typed: the page shows those answers as you type.
const typed = (r) => r.status() === 400
  && (r.url().includes('/api/v1/traceql/check') || /\/api\/v1\/traces\/[0-9a-f]+\/match\?/.test(r.url()));
const { context, page, problems, fetched, close } = await open({ width: 1500, height: 900, expected: typed });
const t = checker();
const check = t.check;

// Waits until the result row of `id` lists every one of `needles` under
// "matched"; gives back whether it did and the text there, so a failure
// shows what the page said.
async function matchedText(id, needles) {
  const sel = `#hits tbody tr[data-trace-id="${id}"] .matched`;
  const ok = await page.waitForFunction(({ sel, needles }) => {
    const t = document.querySelector(sel)?.textContent ?? '';
    return needles.every((n) => t.includes(n));
  }, { sel, needles }, { timeout: TIMEOUT }).then(() => true, () => false);
  const text = await page.locator(sel).first().textContent({ timeout: 1000 }).catch(() => '(no row)');
  return { ok, text };
}
const rowText = (sel) => page.locator(sel).first().textContent();
const selectedName = () => page.locator('.row.selected').first().getAttribute('data-name');

try {
  // ---- search page: a TraceQL example finds the RAG chain, and opens it ----
  t.step = 'search';
  await page.goto(`${base}/`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });
  await page.waitForSelector(`#hits tbody tr[data-trace-id="${RAG}"]`, { timeout: TIMEOUT });
  const example = page.locator('.example', { hasText: 'RateLimitError' }).first();
  await example.click();
  await page.waitForFunction(() => new URLSearchParams(location.search).get('q')?.includes('RateLimitError'), null, { timeout: TIMEOUT });
  await page.waitForFunction((id) => {
    const rows = [...document.querySelectorAll('#hits tbody tr')];
    return rows.length === 1 && rows[0].dataset.traceId === id;
  }, RAG, { timeout: TIMEOUT });
  check(true, 'the RateLimitError example finds exactly the RAG chain');
  check(await page.locator(`#scatter .dot[data-trace-id="${RAG}"]`).count() === 1, 'the scatter has its dot');
  const rowCells = await page.locator('#hits tbody tr').first().textContent();
  check(rowCells.includes('process_query') && rowCells.includes('rag-chain'), `the row names root and service: ${rowCells.replace(/\s+/g, ' ')}`);

  // A bad query is marked at its position.
  await page.fill('#q', '{ name = }');
  await page.waitForSelector('#q-error:not([hidden])', { timeout: TIMEOUT });
  const err = await page.locator('#q-error').textContent();
  check((await page.locator('#q-error').getAttribute('data-position')) === '9' && err.includes('^'), `parse error at its position: ${err.split('\n').pop()}`);
  await page.fill('#q', '');
  await page.waitForSelector('#q-error[hidden]', { state: 'attached', timeout: TIMEOUT });
  await page.locator('.example', { hasText: /^\{ status = error \}$/ }).click();
  await page.waitForFunction(() => new URLSearchParams(location.search).get('q') === '{ status = error }', null, { timeout: TIMEOUT });
  await page.goBack();
  await page.waitForFunction(() => document.querySelector('#q').value.includes('RateLimitError'), null, { timeout: TIMEOUT });
  check(true, 'back restores the query');
  // The rows of `{ status = error }` may still be on screen (the RAG chain is
  // among them): wait for the restored query's own answer, not for any row.
  const matchedRate = await matchedText(RAG, ['1 matched', 'api_call']);
  check(matchedRate.ok, `each row says which spans matched: ${matchedRate.text}`);

  // A pipeline: traces whose api_call ran more than once (the retried RAG chain).
  await page.locator('.example', { hasText: 'count() > 1' }).click();
  // The previous answer was the same single row: wait for this one's text.
  const matchedCount = await matchedText(RAG, ['2 matched', 'api_call, api_call']);
  const rowsNow = await page.locator('#hits tbody tr').count();
  check(matchedCount.ok && rowsNow === 1, `a count() pipeline finds the retried chain (${rowsNow} rows) with both attempts: ${matchedCount.text}`);
  // select(...) shows the asked attributes beside each matched span.
  await page.locator('.example', { hasText: 'select(' }).click();
  await page.waitForFunction((id) => document.querySelector(`#hits tbody tr[data-trace-id="${id}"] .matched`)?.textContent.includes('span.error.type='), RAG, { timeout: TIMEOUT });
  check(true, 'a select() pipeline shows the selected attributes');

  await page.locator(`#hits tbody tr[data-trace-id="${RAG}"] a.root-link`).click();
  await page.waitForURL(`**/trace/${RAG}`, { timeout: TIMEOUT });
  await page.waitForSelector('body[data-ready="true"]', { timeout: TIMEOUT });

  // ---- trace page: tree, critical path, groups, retry fold ----
  t.step = 'trace';
  await page.waitForSelector('.row[data-name="process_query"]', { timeout: TIMEOUT });
  const summary = await page.locator('#summary').textContent();
  check(summary.includes('process_query') && /critical path/i.test(summary) && /llm calls/i.test(summary), 'the header shows root, LLM calls and critical path');
  check(await page.locator('.row.crit[data-name="process_query"]').count() === 1, 'the root is on the critical path');
  check(await page.locator('.row.crit[data-name="llm_call"]').count() === 1, 'llm_call is on the critical path');
  check(await page.locator('.row.crit[data-name="fetch_context"]').count() === 0, 'fetch_context is not');
  const vs = await rowText('.row.group[data-name="vector_search"]');
  check(vs.includes('vector_search ×5'), `same-named siblings group: ${vs.split('\n')[0]}`);
  const retry = await rowText('.row.group[data-name="api_call"]');
  check(retry.includes('api_call ×2 — 1 failed, 114 ms lost'), `the retry folds: ${retry.split('\n')[0]}`);
  const llmBar = await rowText('.row[data-name="llm_call"] .bar-text');
  check(llmBar.includes('gpt-4o-mini') && llmBar.includes('tok'), `the LLM bar shows model and tokens: ${llmBar}`);

  // Expand the retry: the failed attempt is red with its error type.
  await page.locator('.row.group[data-name="api_call"] .toggle').click();
  await page.waitForSelector('.row.err[data-name="api_call"]', { timeout: TIMEOUT });
  const errBar = await rowText('.row.err[data-name="api_call"] .bar-text');
  check(errBar.includes('RateLimitError'), `the failed api_call is red with its error type: ${errBar}`);
  check(await page.locator('.row[data-name="api_call"]:not(.err)').count() === 1, 'the successful retry is there too');
  await page.locator('.row.err[data-name="api_call"] .name').click();
  await page.waitForSelector('#panel .exception .stack', { timeout: TIMEOUT });
  const ex = await page.locator('#panel .exception').textContent();
  check(ex.includes('Rate limit reached for gpt-4o-mini') && ex.includes('Traceback') && ex.includes('openai.RateLimitError'), 'the panel shows the exception with its stack trace');
  check((await page.locator('#panel h2').textContent()) === 'api_call', 'the panel is the api_call');
  const spanLogs = await page.locator('#panel .span-logs').textContent();
  check(spanLogs.includes('WARN') && spanLogs.includes('backing off after 429') && spanLogs.includes('retry_attempt'), `the panel lists the log record the span wrote: ${spanLogs}`);
  check(new URL(page.url()).searchParams.has('span'), 'the selection is in the URL');
  // By its span id, once the panel has it: a link that survives spans
  // arriving later. Opening it selects the same span.
  await page.waitForFunction(() => /^[0-9a-f]{16}$/.test(new URLSearchParams(location.search).get('span') || ''), null, { timeout: TIMEOUT });
  const spanLink = page.url();
  check(!fetched.some((u) => /\/api\/v1\/traces\/[0-9a-f]+$/.test(u)), `the panel read one span, not the whole trace: ${fetched.filter((u) => u.includes('/traces/'))}`);
  const linked = await context.newPage();
  await linked.goto(spanLink);
  await linked.waitForSelector('#panel .exception .stack', { timeout: TIMEOUT });
  check((await linked.locator('#panel h2').textContent()) === 'api_call', 'a span-id link opens that span');
  check(await linked.locator('.row.selected.err[data-name="api_call"]').count() === 1, 'and selects its row');
  await linked.close();
  await page.screenshot({ path: path.join(shots, 'trace-page.png') });

  // ---- LLM conversation, OTel GenAI JSON messages ----
  t.step = 'llm';
  await page.locator('.row[data-name="llm_call"] .name').click();
  await page.waitForSelector('#panel .llm-section .bubble.assistant', { timeout: TIMEOUT });
  const conv = await page.locator('#panel .llm-section .convention').textContent();
  check(conv.includes('OpenTelemetry GenAI'), `convention named: ${conv}`);
  check((await page.locator('#panel .bubble.system').textContent()).includes('You answer geography questions.'), 'system instructions bubble');
  check((await page.locator('#panel .bubble.user').textContent()).includes('What is the capital of France?'), 'user bubble');
  await page.waitForFunction(() => document.querySelector('#panel .bubble.user img.part-image')?.complete, null, { timeout: TIMEOUT });
  const img = await page.evaluate(() => {
    const i = document.querySelector('#panel .bubble.user img.part-image');
    return { w: i.naturalWidth, h: i.naturalHeight, src: i.src.slice(0, 5) };
  });
  check(img.w === 3 && img.h === 2 && img.src === 'blob:', `an image part is drawn from its base64 bytes: ${JSON.stringify(img)}`);
  const asst = await page.locator('#panel .bubble.assistant').textContent();
  check(asst.includes('Paris is the capital of France.') && asst.includes('stop'), 'assistant bubble with finish reason');
  const tokens = await page.locator('#panel .tokens').textContent();
  check(tokens.includes('1,200') && tokens.includes('80') && tokens.includes('$'), `tokens and cost: ${tokens.replace(/\s+/g, ' ')}`);
  // Read as Markdown: emphasis, links (http only), lists, inline code.
  await page.locator('#panel .view-toggle[data-mode="markdown"]').click();
  await page.waitForSelector('#panel .bubble.assistant .md', { timeout: TIMEOUT });
  const md = await page.evaluate(() => {
    const b = document.querySelector('#panel .bubble.assistant .md');
    return {
      strong: b.querySelector('strong')?.textContent,
      link: b.querySelector('a')?.href,
      items: [...b.querySelectorAll('li')].map((li) => li.textContent),
      code: b.querySelector('li code')?.textContent,
      em: b.querySelector('em')?.textContent,
    };
  });
  check(md.strong === 'Sources:' && md.link === 'https://en.wikipedia.org/wiki/Paris' && md.items.length === 2 && md.code === '2.1M' && md.em === 'Seine', `markdown view: ${JSON.stringify(md)}`);
  await page.locator('#panel').screenshot({ path: path.join(shots, 'llm-conversation.png') });
  await page.locator('#panel .view-toggle[data-mode="plain"]').click();

  // Back returns to the api_call selection; forward to llm_call.
  t.step = 'history';
  await page.goBack();
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'api_call', null, { timeout: TIMEOUT });
  check(true, 'back selects the api_call again');
  await page.goForward();
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'llm_call', null, { timeout: TIMEOUT });
  check(true, 'forward selects llm_call');

  // ---- keyboard ----
  t.step = 'keyboard';
  await page.locator('#gantt').focus();
  await page.keyboard.press('Home');
  check(await selectedName() === 'process_query', 'Home selects the root');
  await page.keyboard.press('ArrowDown');
  check(await selectedName() === 'fetch_context', 'ArrowDown moves to fetch_context');
  await page.keyboard.press('ArrowLeft');
  check(await selectedName() === 'process_query', 'ArrowLeft goes to the parent');
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction(() => document.querySelectorAll('.row:not([hidden])').length === 1, null, { timeout: TIMEOUT });
  check(true, 'ArrowLeft on the root collapses the tree');
  await page.keyboard.press('ArrowRight');
  await page.waitForFunction(() => document.querySelectorAll('.row:not([hidden])').length > 5, null, { timeout: TIMEOUT });
  check(true, 'ArrowRight expands it');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#panel h2')?.textContent === 'embed_query', null, { timeout: TIMEOUT });
  check(true, 'Enter opens the selected span');

  // ---- what-if through the analysis API ----
  t.step = 'what-if';
  for (const name of ['fetch_context', 'embed_query']) {
    await page.locator(`.row[data-name="${name}"] .name`).click();
    await page.waitForFunction((n) => document.querySelector('#panel h2')?.textContent === n, name, { timeout: TIMEOUT });
    await page.locator('#panel .whatif-add').click();
  }
  await page.locator('#whatif-run').click();
  await page.waitForFunction(() => document.querySelector('#whatif-result')?.textContent.includes('critical path:'), null, { timeout: TIMEOUT });
  const whatIf = await page.locator('#whatif-result').textContent();
  check(/saves/.test(whatIf) && (await page.locator('#whatif-names .chip').count()) === 2, `what-if answers: ${whatIf}`);
  // The new critical path is outlined in the chart, row for row as named.
  const said = whatIf.split('critical path: ')[1].split(' (')[0].split(' → ');
  const outlined = await page.locator('.row.whatif-path').evaluateAll((rs) => rs.map((r) => r.dataset.name));
  check(outlined.join(',') === said.join(','), `what-if path outlined: ${outlined} vs ${said}`);
  const barWidths = await page.locator('.row.whatif-path .bar').evaluateAll((bs) => bs.map((b) => b.getBoundingClientRect().width));
  check(barWidths.length === said.length && barWidths.every((w) => w > 0), `outlined rows keep their bars: ${barWidths}`);
  await page.locator('#whatif-clear').click();
  await page.waitForFunction(() => !document.querySelector('.row.whatif-path'), null, { timeout: TIMEOUT });
  check(true, 'clearing the what-if clears the outline');

  // ---- critical path only, find ----
  t.step = 'filters';
  await page.locator('#crit-only').check();
  await page.waitForFunction(() => [...document.querySelectorAll('.row:not([hidden])')].every((r) => r.classList.contains('crit')), null, { timeout: TIMEOUT });
  const critNames = await page.locator('.row:not([hidden])').evaluateAll((rs) => rs.map((r) => r.dataset.name));
  check(critNames.join(',') === 'process_query,llm_call,api_call', `critical path only: ${critNames}`);
  await page.locator('#crit-only').uncheck();
  await page.fill('#find', 'embed');
  await page.waitForFunction(() => document.querySelectorAll('.row:not([hidden])').length === 2, null, { timeout: TIMEOUT });
  const found = await page.locator('.row:not([hidden])').evaluateAll((rs) => rs.map((r) => r.dataset.name));
  check(found.join(',') === 'process_query,embed_query', `find hides others, keeps ancestors: ${found}`);
  await page.selectOption('#find-mode', 'dim');
  await page.waitForFunction(() => document.querySelectorAll('.row.dim').length > 3, null, { timeout: TIMEOUT });
  check(await page.locator('.row.match[data-name="embed_query"]').count() === 1, 'dim mode keeps rows, marks the match');
  await page.fill('#find', 'text-embedding-3');
  await page.waitForFunction(() => document.querySelector('.row.match[data-name="embed_query"]'), null, { timeout: TIMEOUT });
  check(true, 'find matches attribute values');
  // A TraceQL span condition, run by the server on this trace.
  await page.selectOption('#find-mode', 'hide');
  await page.fill('#find', '{ span.model = "text-embedding-3-small" }');
  await page.waitForFunction(() => /TraceQL/.test(document.querySelector('#find-count').textContent), null, { timeout: TIMEOUT });
  const byQuery = await page.locator('.row:not([hidden])').evaluateAll((rs) => rs.map((r) => r.dataset.name));
  check(byQuery.join(',') === 'process_query,embed_query', `TraceQL find keeps the match and its ancestors: ${byQuery}`);
  await page.fill('#find', '{ name = }');
  await page.waitForSelector('#find-count.err', { timeout: TIMEOUT });
  check((await page.locator('#find-count').textContent()).includes('invalid TraceQL'), 'a bad TraceQL find says why');
  await page.fill('#find', '');

  // ---- other conventions ----
  t.step = 'conventions';
  await page.goto(`${base}/trace/${CONV}`);
  await page.waitForSelector('.row[data-name="ChatCompletion"]', { timeout: TIMEOUT });
  // The page's Link header preloads the Gantt; the script uses that answer
  // instead of asking again.
  const ganttAsks = await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.endsWith('/gantt')).length);
  check(ganttAsks === 1, `the Gantt is fetched once, by the preload (${ganttAsks} requests)`);
  await page.locator('.row[data-name="ChatCompletion"] .name').click();
  await page.waitForSelector('#panel .bubble.assistant', { timeout: TIMEOUT });
  check((await page.locator('#panel .convention').textContent()).includes('OpenInference'), 'OpenInference convention named');
  check((await page.locator('#panel .bubble.user').textContent()).includes('Name a river in Egypt.'), 'OpenInference user bubble');
  check((await page.locator('#panel .bubble.assistant').textContent()).includes('The Nile.'), 'OpenInference answer');
  await page.locator('.row[data-name="openai.chat"] .name').click();
  await page.waitForFunction(() => document.querySelector('#panel .convention')?.textContent.includes('Traceloop'), null, { timeout: TIMEOUT });
  check((await page.locator('#panel .bubble.assistant').textContent()).includes('Katze'), 'Traceloop answer');

  // ---- injection ----
  t.step = 'injection';
  await page.goto(`${base}/trace/${HOSTILE}`);
  await page.waitForSelector('.row', { timeout: TIMEOUT });
  const names = await page.locator('.row:not([hidden])').evaluateAll((rs) => rs.map((r) => r.querySelector('.name').textContent));
  check(names.some((n) => n.startsWith('<script>')) && names.some((n) => n.startsWith('<img')), 'hostile names shown as text');
  for (let k = 0; k < names.length; k++) {
    await page.locator('.row:not([hidden]) .name').nth(k).click();
    await page.waitForSelector('#panel section h3', { timeout: TIMEOUT });
    await page.waitForFunction(() => !document.querySelector('#panel')?.textContent.includes('loading span details'), null, { timeout: TIMEOUT });
  }
  await page.waitForSelector('#panel .bubble.user', { timeout: TIMEOUT });
  check((await page.locator('#panel .bubble.user').textContent()).includes('<script>'), 'hostile message shown as text');
  // Read as Markdown too: a javascript: link stays text, tags stay text.
  await page.locator('#panel .view-toggle[data-mode="markdown"]').click();
  await page.waitForSelector('#panel .bubble.user .md', { timeout: TIMEOUT });
  check((await page.locator('#panel .bubble.user .md strong').textContent()).includes('<img'), 'markdown keeps tags as text');
  const injected = await page.evaluate(() => ({
    pwned: window.__pwned,
    imgs: document.querySelectorAll('img').length,
    scripts: [...document.querySelectorAll('script')].filter((s) => !s.src).length,
    svgs: document.querySelectorAll('svg:not(#scatter)').length,
    bold: document.querySelectorAll('b').length,
    badLinks: [...document.querySelectorAll('a')].filter((a) => !/^https?:/.test(a.href)).length,
    good: document.querySelectorAll('a[href="https://example.com/ok"]').length,
  }));
  check(injected.pwned === undefined, `no script ran (window.__pwned = ${injected.pwned})`);
  check(injected.imgs === 0 && injected.scripts === 0 && injected.svgs === 0 && injected.bold === 0, `no element injected: ${JSON.stringify(injected)}`);
  check(injected.badLinks === 0, 'no javascript: link');
  check(injected.good === 1, 'the https value is a link');
  // The hostile trace in the search results, too.
  await page.goto(`${base}/`);
  await page.waitForSelector(`#hits tbody tr[data-trace-id="${HOSTILE}"]`, { timeout: TIMEOUT });
  const again = await page.evaluate(() => ({ pwned: window.__pwned, imgs: document.querySelectorAll('img').length }));
  check(again.pwned === undefined && again.imgs === 0, 'search results escape hostile names');
  await page.screenshot({ path: path.join(shots, 'search-page.png') });

  t.step = 'console';
  check(problems.length === 0, `no dialogs, page errors or console errors: ${problems.join(' | ')}`);
} catch (e) {
  t.failures++;
  console.log(`FAIL [${t.step}] ${e.stack || e}`);
  try {
    await page.screenshot({ path: path.join(shots, 'failure.png') });
  } catch {
    /* the page is gone */
  }
} finally {
  await close();
}
console.log(t.failures ? `${t.failures} check(s) failed` : 'all checks passed');
process.exit(t.failures ? 1 : 0);
