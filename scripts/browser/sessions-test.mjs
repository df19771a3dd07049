// Drives the sessions pages in Debian's Chromium against a running
// chaintrace that crates/cli/tests/it/browser.rs loaded with the demo's two
// conversations and a hostile one; exits non-zero when any check failed.
// Waits on selectors and conditions, never on sleeps.
//
// Environment: CHAINTRACE_URL, CHAINTRACE_NODE_MODULES, CHAINTRACE_SHOTS,
// SESSION_DEMO (the demo's first session id), SESSION_HOSTILE.

import path from 'node:path';
import { checker, env, open } from './harness.mjs';

const base = env('CHAINTRACE_URL');
const shots = env('CHAINTRACE_SHOTS');
const DEMO = env('SESSION_DEMO');
const HOSTILE = env('SESSION_HOSTILE');
const TIMEOUT = 20000;
const { page, problems, close } = await open({ width: 1300, height: 900 });
const t = checker();
const check = t.check;
const texts = (sel) => page.locator(sel).allTextContents();

try {
  t.step = 'list';
  await page.goto(`${base}/sessions?since=1h`);
  await page.waitForSelector('#sessions tbody tr', { timeout: TIMEOUT });
  await page.waitForFunction(() => document.querySelectorAll('#sessions tbody tr').length >= 3, null, { timeout: TIMEOUT });
  const rows = await texts('#sessions tbody tr');
  check(rows.length === 3, `three sessions listed (${rows.length})`);
  const demoRow = rows.find((r) => r.includes(DEMO)) || '';
  check(demoRow.includes('user_42'), `the demo session names its user: ${demoRow}`);
  check(await page.locator('#since').inputValue() === '1h', 'the range comes from the URL');
  await page.screenshot({ path: path.join(shots, 'sessions-list.png') });

  t.step = 'transcript';
  await page.locator('#sessions tbody a', { hasText: DEMO }).click();
  await page.waitForSelector('#turns li.turn', { timeout: TIMEOUT });
  check(page.url().includes(`/sessions/${encodeURIComponent(DEMO)}`) && page.url().includes('since=1h'), `the URL names the session and keeps the range: ${page.url()}`);
  const asked = await texts('#turns .bubble.user .bubble-text');
  check(JSON.stringify(asked) === JSON.stringify([
    'What is our refund policy for annual plans?',
    'And for monthly plans?',
    'Can you summarise both in one sentence?',
  ]), `the three questions in order: ${JSON.stringify(asked)}`);
  const answers = await texts('#turns .bubble.assistant .bubble-text');
  check(answers.length === 3 && answers[0].startsWith('Annual plans can be refunded'), `the answers: ${JSON.stringify(answers)}`);
  const gaps = await texts('#turns li.gap');
  check(gaps.length === 2 && gaps.every((g) => g.endsWith('later')), `the pauses between turns: ${JSON.stringify(gaps)}`);
  const failed = await texts('#turns li.turn.has-error .turn-facts');
  check(failed.length === 1 && failed[0].includes('RateLimitError'), `one failed turn, naming its error: ${JSON.stringify(failed)}`);
  check(await page.locator('#timeline rect.turn-bar').count() === 3, 'a timeline bar per turn');
  check(await page.locator('#timeline rect.turn-bar.error').count() === 1, 'the failed turn is marked on the timeline');
  const summary = await page.locator('#session-summary').textContent();
  check(summary.includes('user_42') && summary.includes('turns3'), `summary: ${summary}`);
  const traceLinks = await page.locator('#turns .turn-head a:not(.compare-link)').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
  check(traceLinks.length === 3 && traceLinks.every((h) => /^\/trace\/[0-9a-f]{32}$/.test(h)), `each turn links to its trace: ${traceLinks}`);
  await page.screenshot({ path: path.join(shots, 'session-transcript.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.screenshot({ path: path.join(shots, 'session-transcript-dark.png'), fullPage: true });
  await page.emulateMedia({ colorScheme: 'light' });

  t.step = 'compare';
  // Turn 2 (the concurrent chain) against turn 1 (the same chain run back to back).
  const compareHref = await page.locator('#turns li.turn').nth(1).locator('a.compare-link').getAttribute('href');
  check(compareHref === `/compare/${traceLinks[0].slice(7)}/${traceLinks[1].slice(7)}`, `turn 2 compares with turn 1: ${compareHref}`);
  await page.locator('#turns li.turn').nth(1).locator('a.compare-link').click();
  await page.waitForSelector('#matched tbody tr', { timeout: TIMEOUT });
  const paths = await page.locator('#matched tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.path));
  check(paths.length === 7 && paths.includes('process_query > fetch_context') && paths.includes('process_query > llm_call > api_call'), `the seven steps matched by path: ${JSON.stringify(paths)}`);
  const llmMarks = await page.locator('#matched tbody tr[data-path="process_query > llm_call"] .crit-marks').textContent();
  check(llmMarks === '◆◆', `llm_call is on both critical paths: ${llmMarks}`);
  const same = await page.locator('#paths').textContent();
  check(same.includes('The critical paths are the same.'), `the unchanged critical path is said: ${same}`);
  const totals = await page.locator('#compare-summary').textContent();
  check(/B − A[+−0]/.test(totals), `the difference of the totals is shown: ${totals}`);
  check(await page.locator('#lone li').count() === 0, 'no span is on one side only');
  await page.screenshot({ path: path.join(shots, 'compare.png'), fullPage: true });
  await page.goBack();
  await page.waitForSelector('#turns li.turn', { timeout: TIMEOUT });

  t.step = 'back and forward';
  await page.goBack();
  await page.waitForFunction(() => !document.getElementById('list').hidden, null, { timeout: TIMEOUT });
  check(await page.locator('#sessions tbody tr').count() === 3, 'back shows the list again');
  await page.goForward();
  await page.waitForFunction(() => !document.getElementById('session').hidden && document.querySelectorAll('#turns li.turn').length === 3, null, { timeout: TIMEOUT });
  check(true, 'forward shows the transcript again');

  t.step = 'injection';
  await page.goto(`${base}/sessions?since=1h`);
  await page.waitForFunction(() => document.querySelectorAll('#sessions tbody tr').length >= 3, null, { timeout: TIMEOUT });
  await page.goto(`${base}/sessions/${encodeURIComponent(HOSTILE)}?since=1h`);
  await page.waitForSelector('#turns li.turn', { timeout: TIMEOUT });
  const injected = await page.evaluate(() => ({
    pwned: window.__pwned,
    imgs: document.querySelectorAll('img').length,
    scripts: [...document.querySelectorAll('script')].filter((s) => !s.src).length,
    text: document.querySelector('#turns .bubble.user .bubble-text')?.textContent,
    title: document.title,
  }));
  check(injected.pwned === undefined, `no script ran (window.__pwned = ${injected.pwned})`);
  check(injected.imgs === 0 && injected.scripts === 0, `no element injected: ${JSON.stringify(injected)}`);
  check((injected.text || '').includes('<script>'), 'hostile text is shown as text');

  t.step = 'console';
  check(problems.length === 0, `no dialogs, page errors or failed requests: ${problems.join(' | ')}`);
} catch (e) {
  t.failures++;
  console.log(`FAIL [${t.step}] ${e.stack || e}`);
  try {
    await page.screenshot({ path: path.join(shots, 'sessions-failure.png') });
  } catch {
    /* the page is gone */
  }
} finally {
  await close();
}
console.log(t.failures ? `${t.failures} check(s) failed` : 'all checks passed');
process.exit(t.failures ? 1 : 0);
